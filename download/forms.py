from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import HiddenField, PasswordField, StringField
from wtforms.validators import DataRequired, Length


class UnlockForm(FlaskForm):
    transaction_id = StringField(
        _l("Transaction ID"),
        validators=[DataRequired(_l("Please enter the transaction ID from the e-mail.")), Length(max=100)],
    )
    password = PasswordField(_l("Password"), validators=[Length(max=1000)])


class LinkForm(FlaskForm):
    """No-password mode: the link carries the secret; a button opens it.

    Opening needs a POST so that mail scanners that follow links do not
    open the transfer (and record a download) on their own.
    """

    transaction_id = HiddenField(validators=[DataRequired(), Length(max=100)])
    key = HiddenField(validators=[DataRequired(), Length(max=200)])

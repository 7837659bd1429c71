from __future__ import annotations

from flask import current_app
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length, ValidationError
from wtforms.widgets import PasswordInput

from app.verification import code_digits


class UnlockForm(FlaskForm):
    """Transaction ID with the password, or, for a transfer sent without a
    password, with the access key from the link.

    The page's script takes the key from the link's fragment; without
    scripts the recipient types or pastes it. Either way it travels in a POST
    body, never in a URL, and opening takes a click, so mail scanners that
    follow links do not open the transfer on their own.
    """

    transaction_id = StringField(
        _l("Transaction ID"),
        validators=[DataRequired(_l("Please enter the transaction ID from the email.")), Length(max=100)],
    )
    password = PasswordField(_l("Password"), validators=[Length(max=1000)])
    key = StringField(_l("Access key"), validators=[Length(max=200)], filters=[lambda v: v.strip() if v else v])

    def validate_password(self, field: PasswordField) -> None:
        if not field.data and not self.key.data:
            raise ValidationError(
                _l("Please enter the password, or the access key from the email if the transfer was sent without a password.")
            )

    def keep_password(self) -> None:
        """Show the typed password again: the portal was busy, the password
        was never tried (the page is never cached: Cache-Control: no-store).
        A wrong password is not echoed back."""
        self.password.widget = PasswordInput(hide_value=False)


class CodeForm(FlaskForm):
    """The one-time code that went to the recipient's address or phone."""

    code = StringField(
        _l("Verification code"),
        validators=[DataRequired(_l("Please enter the code.")), Length(max=40)],
        filters=[lambda v: v.strip() if v else v],
    )

    def validate_code(self, field: StringField) -> None:
        # Not a code at all (a typo, letters): said so, and no try spent on it.
        length = current_app.config["KOERIER"].recipient_codes.code_length
        if len(code_digits(field.data)) != length or any(ch.isalpha() for ch in field.data):
            raise ValidationError(_l("The code has %(count)d digits.", count=length))

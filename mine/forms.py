"""The forms of My transfers; fields and checks shared with the wizard's."""

from __future__ import annotations

import re

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import IntegerField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, NumberRange, Optional, ValidationError

from wizard.forms import OptionsForm, PersonalForm

# One message per field: the error summary lists both, and names what is missing.
WHO = _l("Please enter the name of the person you ask.")
WHERE = _l("Please enter the email address of the person you ask.")
AT_MOST = _l("Please use at most %(max)d characters.")


class AddressForm(FlaskForm):
    email = PersonalForm.email
    validate_email = PersonalForm.validate_email


class ExpiryForm(FlaskForm):
    expires_on = OptionsForm.expires_on


class RequestForm(FlaskForm):
    """An upload request: whom it goes to, the staff member's words, until when, and optional limits."""

    name = StringField(
        _l("Name"), validators=[DataRequired(WHO), Length(max=100, message=AT_MOST)],
        filters=[lambda v: v.strip() if v else v],
    )
    email = StringField(_l("Email address"), validators=[DataRequired(WHERE)], filters=[lambda v: v.strip() if v else v])
    validate_email = PersonalForm.validate_email
    message = TextAreaField(_l("Message"), validators=[Length(max=2000, message=AT_MOST)])
    expires_on = OptionsForm.expires_on
    language = OptionsForm.recipient_language
    allowed_extensions = StringField(
        _l("Allowed file types (optional)"), validators=[Length(max=500)], filters=[lambda v: v.strip() if v else v],
    )
    max_megabytes = IntegerField(
        _l("Largest total size in MB (optional)"),
        validators=[
            Optional(), NumberRange(min=1, max=2**30, message=_l("Please enter a whole number of at least 1.")),
        ],
    )

    def validate_allowed_extensions(self, field: StringField) -> None:
        """Extensions as the configuration gives them: "pdf, jpg" (a leading dot is forgiven)."""
        listed = [e.strip().lstrip(".").lower() for e in re.split(r"[\s,;]+", field.data or "") if e.strip()]
        if any(not re.fullmatch(r"[a-z0-9]{1,16}", e) for e in listed):
            raise ValidationError(
                _l("Please give file types as extensions separated by commas, for example: pdf, jpg.")
            )
        self.extensions = sorted(set(listed)) or None

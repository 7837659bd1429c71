"""The forms of My transfers; fields and checks shared with the wizard's."""

from __future__ import annotations

from flask_wtf import FlaskForm

from wizard.forms import OptionsForm, PersonalForm


class AddressForm(FlaskForm):
    email = PersonalForm.email
    validate_email = PersonalForm.validate_email


class ExpiryForm(FlaskForm):
    expires_on = OptionsForm.expires_on

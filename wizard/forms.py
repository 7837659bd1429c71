"""One form per wizard step. Labels are lazy so they follow the UI language."""

from __future__ import annotations

import hashlib

import re

from flask import current_app
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import BooleanField, SelectChoice, DateField, PasswordField, RadioField, SelectField, StringField, TextAreaField
from wtforms.widgets import PasswordInput
from wtforms.validators import DataRequired, InputRequired, Length, ValidationError

from app import addresses, i18n
from app.verification import code_digits

_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")
_PHONE = re.compile(r"^\+?[0-9 ()./-]{6,30}$")


def _no_control(form: FlaskForm, field: StringField) -> None:
    if field.data and _CONTROL.search(field.data):
        raise ValidationError(_l("Please use letters, digits and punctuation only."))


class StepForm(FlaskForm):
    """A wizard step's form. Its "Back" is a button of the form (action=back),
    not a link, so that what was typed is saved before going back, as "Next"
    saves it: a link would leave it behind, and the page it leads back from
    is prefilled from the draft when shown again."""

    action = StringField()

    @property
    def back(self) -> bool:
        return self.action.data == "back"


class PersonalForm(StepForm):
    """The first step. Its "Back" leads to the start page, there being no
    step before it, with what was typed kept for the step's next view: not
    saved, as a changed address is only saved with its code sent ("Next")."""

    name = StringField(
        _l("Name"),
        validators=[DataRequired(_l("Please enter your name.")), Length(max=100, message=_l("Please use at most %(max)d characters.")), _no_control],
        filters=[lambda v: v.strip() if v else v],
    )
    phone = StringField(
        _l("Phone"),
        validators=[DataRequired(_l("Please enter your phone number."))],
        filters=[lambda v: v.strip() if v else v],
    )
    email = StringField(
        _l("Email address"),
        validators=[DataRequired(_l("Please enter your email address."))],
        filters=[lambda v: v.strip() if v else v],
    )

    def validate_phone(self, field: StringField) -> None:
        digits = sum(ch.isdigit() for ch in field.data or "")
        if not _PHONE.match(field.data or "") or not 6 <= digits <= 15:
            raise ValidationError(_l("Please enter a phone number, for example 0592 123456 or +31 6 12345678."))

    def validate_email(self, field: StringField) -> None:
        try:
            field.data = addresses.normalize(field.data or "")
        except addresses.InvalidAddress:
            raise ValidationError(_l("This is not a valid email address.")) from None


class VerifyForm(FlaskForm):
    code = StringField(
        _l("Verification code"),
        validators=[DataRequired(_l("Please enter the verification code from the email."))],
        filters=[lambda v: v.strip() if v else v],
    )

    def validate_code(self, field: StringField) -> None:
        # Not a code at all (a typo, letters): said so, and no try spent on it.
        length = current_app.config["KOERIER"].verification.code_length
        if len(code_digits(field.data)) != length or any(ch.isalpha() for ch in field.data):
            raise ValidationError(_l("The code from the email has %(count)d digits.", count=length))


class RecipientsForm(StepForm):
    to = TextAreaField(_l("To"), validators=[Length(max=20_000)])
    cc = TextAreaField(_l("Cc"), validators=[Length(max=20_000)])
    bcc = TextAreaField(_l("Bcc"), validators=[Length(max=20_000)])

    def validate(self, extra_validators=None) -> bool:  # type: ignore[no-untyped-def]
        ok = super().validate(extra_validators)
        self.parsed: dict[str, list[str]] = {}
        for name in ("to", "cc", "bcc"):
            field = getattr(self, name)
            try:
                self.parsed[name] = addresses.parse_list(field.data or "")
            except addresses.InvalidAddress as exc:
                field.errors = [*field.errors, _l("“%(address)s” is not a valid email address.", address=exc.address)]
                ok = False
        if ok:
            # Dropped from Bcc, it would be shown to every recipient: the sender chooses.
            shown = {*self.parsed["to"], *self.parsed["cc"]}
            for address in dict.fromkeys(a for a in self.parsed["bcc"] if a in shown):
                self.bcc.errors = [*self.bcc.errors, _l(
                    "“%(address)s” is under To or Cc as well, where every recipient sees it. "
                    "Remove it from Bcc, or from To and Cc to keep it hidden.", address=address,
                )]
                ok = False
        # Going back without one is fine: "Next" needs one, "Back" saves what there is.
        if ok and not self.parsed["to"] and not self.back:
            self.to.errors = [*self.to.errors, _l("Please enter at least one recipient.")]
            ok = False
        if ok:
            self.parsed["to"], self.parsed["cc"], self.parsed["bcc"] = addresses.dedupe(
                self.parsed["to"], self.parsed["cc"], self.parsed["bcc"]
            )
        return ok


def mobile_field_name(address: str) -> str:
    """A recipient's mobile number field, named by its address, so that a
    number typed stays with its recipient when the addresses above change."""
    return "mobile_" + hashlib.sha256(address.encode()).hexdigest()[:16]


def recipients_form(addresses: list[str], **kwargs: object) -> RecipientsForm:
    """The recipients step's form, with a mobile number field per address
    where the recipients' rules ask for (or offer) a code by SMS."""

    class WithMobiles(RecipientsForm):
        pass

    for address in addresses:
        setattr(WithMobiles, mobile_field_name(address), StringField(address, validators=[Length(max=40)], filters=[
            lambda v: v.strip() if v else v
        ]))
    form = WithMobiles(**kwargs)
    form.mobiles = [(address, form[mobile_field_name(address)]) for address in addresses]
    return form


class MessageForm(FlaskForm):
    """The "next" button of the files step, which also saves the message."""

    # The page's script keeps what is typed in this tab until the transfer
    # starts (static/js/keep.js), for the sender whose page this is: see keep_for.
    message = TextAreaField(
        _l("Confidential message"), validators=[Length(max=20_000, message=_l("Please use at most %(max)d characters."))],
    )

    def keep_for(self, sender_email: str) -> None:
        """Kept text comes back only to a page of the same verified sender, so
        that the next person at a shared computer, who verifies another
        address after the session ended, does not find it."""
        owner = hashlib.sha256(f"koerier/keep/{sender_email.lower()}".encode()).hexdigest()[:32]
        self.message.render_kw = {"data-keep": "message", "data-keep-owner": owner}


class OptionsForm(StepForm):
    expires_on = DateField(
        _l("Expiration date"),
        validators=[InputRequired(_l("Please choose an expiration date."))],
        format="%Y-%m-%d",
    )
    recipient_language = SelectField(_l("Recipient language"), choices=i18n.choices)
    notify_confirmation = BooleanField(_l("Send me a confirmation"))
    notify_retrieval = BooleanField(_l("Inform me when files are retrieved"))
    expose_filenames = BooleanField(_l("Show file names in notification mails"))
    password_mode = RadioField(
        _l("Password security"),
        choices=[
            SelectChoice("none", _l("No password")),
            SelectChoice("generate", _l("Generate password")),
            SelectChoice("manual", _l("Enter password manually")),
        ],
        validators=[InputRequired(_l("Please choose how the transfer is protected."))],
    )
    recipient_verification = RadioField(
        _l("Extra check for the recipients"),
        choices=[
            SelectChoice("none", _l("None: the password (or link) opens the transfer")),
            SelectChoice("email", _l("A one-time code to the recipient's email address")),
            SelectChoice("sms", _l("A one-time code by SMS to the recipient's mobile number")),
        ],
        # Which choices a sender has depends on the rules: the view checks.
        validate_choice=False,
    )
    # Echoed back on an error elsewhere in the form, so nothing typed is lost;
    # the page itself is never cached (Cache-Control: no-store).
    password = PasswordField(_l("Password"), widget=PasswordInput(hide_value=False))
    password_repeat = PasswordField(_l("Repeat password"), widget=PasswordInput(hide_value=False))


class NotificationForm(StepForm):
    subject = StringField(
        _l("Subject"),
        validators=[DataRequired(_l("Please enter a subject.")), Length(max=200, message=_l("Please use at most %(max)d characters.")), _no_control],
    )
    body = TextAreaField(
        _l("Message"),
        validators=[DataRequired(_l("Please enter a message for the recipient.")), Length(max=10_000, message=_l("Please use at most %(max)d characters."))],
    )

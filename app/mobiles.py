"""Recipients' mobile numbers, for SMS codes: parsed, checked and stored in
one form (E.164, ``+31612345678``) with Google's libphonenumber metadata.

A number without a country code is read as Dutch (``06 12345678``); a
fixed line is refused, since no SMS reaches it.
"""

from __future__ import annotations

import phonenumbers
from phonenumbers import PhoneNumberType

DEFAULT_REGION = "NL"
_MOBILE = (PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE)


class InvalidMobile(ValueError):
    """``reason``: "invalid" (not a phone number) or "not_mobile" (a fixed line, a service number)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def normalize(typed: str) -> str:
    """The number in E.164, or InvalidMobile."""
    text = typed.strip()
    if not text or len(text) > 40:
        raise InvalidMobile("invalid")
    try:
        number = phonenumbers.parse(text, DEFAULT_REGION)
    except phonenumbers.NumberParseException:
        raise InvalidMobile("invalid") from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidMobile("invalid")
    if phonenumbers.number_type(number) not in _MOBILE:
        raise InvalidMobile("not_mobile")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def readable(number: str) -> str:
    """For the sender's own eyes on the recipients step: +31 6 12345678."""
    return phonenumbers.format_number(phonenumbers.parse(number), phonenumbers.PhoneNumberFormat.INTERNATIONAL)

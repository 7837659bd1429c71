"""E-mail addresses as people paste them from Outlook, Excel or a signature."""

from __future__ import annotations

import re

from email_validator import EmailNotValidError, validate_email

_SEPARATORS = re.compile(r"[\s,;]+")
_WRAPPERS = "<>\"'()[]"


class InvalidAddress(ValueError):
    def __init__(self, address: str) -> None:
        super().__init__(address)
        self.address = address


def normalize(address: str) -> str:
    """The canonical form of one address, or InvalidAddress."""
    candidate = address.strip().strip(_WRAPPERS)
    if not candidate or len(candidate) > 254 or any(ord(ch) < 32 or ord(ch) == 127 for ch in candidate):
        raise InvalidAddress(address.strip())
    try:
        result = validate_email(candidate, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError:
        raise InvalidAddress(candidate) from None
    # Domain parts are case-insensitive; local parts are in practice too, and
    # treating them so makes duplicates and "remember me" behave as expected.
    return result.normalized.lower()


def parse_list(text: str) -> list[str]:
    """Addresses separated by commas, semicolons, spaces or newlines.

    ``Jan Jansen <jan@example.nl>`` is understood too: when the text has
    angle brackets, words without "@" are taken for display names.
    """
    named = "<" in text
    found: list[str] = []
    for token in _SEPARATORS.split(text):
        if not token.strip(_WRAPPERS):
            continue
        if "@" not in token and named:
            continue
        found.append(normalize(token))
    return found


def parse_valid(text: str) -> list[str]:
    """The valid addresses of ``text``, in order, skipping the rest: what the
    page can show a row for while the text itself is refused."""
    found = []
    for token in _SEPARATORS.split(text):
        try:
            found.append(normalize(token))
        except InvalidAddress:
            continue
    return found


def dedupe(*lists: list[str]) -> tuple[list[str], ...]:
    """Drop repeats within and across To, Cc and Bcc; the first place wins."""
    seen: set[str] = set()
    out: list[list[str]] = []
    for addresses in lists:
        kept = []
        for address in addresses:
            if address not in seen:
                seen.add(address)
                kept.append(address)
        out.append(kept)
    return tuple(out)

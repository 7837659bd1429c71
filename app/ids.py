"""Identifiers people read aloud, and secrets nobody has to.

A transaction ID is 12 characters of Crockford base32, 60 random bits,
shown in three groups of four (``7KQ2-M9XD-4TRB``) so that it can be read
out over the phone. It names a transfer; it is not what keeps it closed:
that is the password or the link secret. docs/FORMAT.md ("Transaction
IDs") weighs its 60 bits against the portal's lockouts and limits. IDs
made before were 28 characters (140 bits); they still open their transfers.

Crockford's alphabet has no I, L, O or U, so "0/O" and "1/I/L" cannot be
confused. Input is forgiving: case, spaces and dashes (also the typographic
ones a mail program or word processor puts in) are ignored, and look-alike
letters are mapped to their digits.
"""

from __future__ import annotations

import secrets

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
ACCESS_ID_CHARS = 12  # 12 x 5 bits = 60 bits
# The length of IDs made before the short ones (140 bits); still accepted.
OLD_ACCESS_ID_CHARS = 28
_LOOKALIKES = str.maketrans({"O": "0", "I": "1", "L": "1"})
_DASHES = "-\u2010\u2011\u2012\u2013\u2014\u2212"


def new_access_id() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(ACCESS_ID_CHARS))


def normalize_access_id(typed: str) -> str:
    """Canonical form of a typed ID, or "" when it cannot be one."""
    cleaned = "".join(ch for ch in typed.upper() if not ch.isspace() and ch not in _DASHES).translate(_LOOKALIKES)
    if len(cleaned) not in (ACCESS_ID_CHARS, OLD_ACCESS_ID_CHARS) or any(ch not in ALPHABET for ch in cleaned):
        return ""
    return cleaned


def group(value: str, size: int = 4) -> str:
    return "-".join(value[i : i + size] for i in range(0, len(value), size))


def new_token() -> str:
    """A URL-safe secret of 256 bits (drafts, link secrets, grants)."""
    return secrets.token_urlsafe(32)

"""Identifiers people read aloud, and secrets nobody has to.

Transaction IDs are 140 random bits (ASVS 11.5.1 asks for at least 128) in
Crockford base32: no I, L, O or U, so "0/O" and "1/I/L" cannot be confused
on the phone, shown in groups of four. Input is forgiving: case, spaces and
dashes are ignored and look-alike letters are mapped to their digits.
"""

from __future__ import annotations

import secrets

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
ACCESS_ID_CHARS = 28  # 28 x 5 bits = 140 bits
_LOOKALIKES = str.maketrans({"O": "0", "I": "1", "L": "1"})


def new_access_id() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(ACCESS_ID_CHARS))


def normalize_access_id(typed: str) -> str:
    """Canonical form of a typed ID, or "" when it cannot be one."""
    cleaned = "".join(ch for ch in typed.upper() if not ch.isspace() and ch != "-").translate(_LOOKALIKES)
    if len(cleaned) != ACCESS_ID_CHARS or any(ch not in ALPHABET for ch in cleaned):
        return ""
    return cleaned


def group(value: str, size: int = 4) -> str:
    return "-".join(value[i : i + size] for i in range(0, len(value), size))


def new_token() -> str:
    """A URL-safe secret of 256 bits (drafts, link secrets, grants)."""
    return secrets.token_urlsafe(32)

"""Data keys, key wrapping and the password KDF.

A transfer has one random data key (DEK). Everything else is derived from it
with HKDF under a distinct label, so one leaked file key reveals nothing else.
The DEK itself is only ever stored wrapped (AES-256-GCM) under a key
encryption key: the server's draft key while the sender is composing, then a
password (Argon2id) or link-secret key slot once the transfer is committed.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

from argon2.low_level import Type, hash_secret_raw
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEY_BYTES = 32
NONCE_BYTES = 12
SALT_BYTES = 16


class DecryptionError(Exception):
    """Authentication failed: wrong key, or the data was changed."""


def new_key() -> bytes:
    return os.urandom(KEY_BYTES)


def derive(key: bytes, label: str, salt: bytes | None = None) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=salt, info=label.encode()).derive(key)


def wrap(kek: bytes, secret: bytes, aad: bytes) -> bytes:
    """Seal a small secret: random nonce || ciphertext || tag."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(kek).encrypt(nonce, secret, aad)


def unwrap(kek: bytes, sealed: bytes, aad: bytes) -> bytes:
    try:
        return AESGCM(kek).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], aad)
    except (InvalidTag, ValueError):
        raise DecryptionError from None


@dataclass(frozen=True)
class Argon2Params:
    time_cost: int
    memory_kib: int
    parallelism: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, int]) -> "Argon2Params":
        return cls(int(data["time_cost"]), int(data["memory_kib"]), int(data["parallelism"]))


def password_kek(password: str, salt: bytes, params: Argon2Params) -> bytes:
    return hash_secret_raw(
        secret=password.encode("utf-8"),
        salt=salt,
        time_cost=params.time_cost,
        memory_cost=params.memory_kib,
        parallelism=params.parallelism,
        hash_len=KEY_BYTES,
        type=Type.ID,
    )


def seal_text(dek: bytes, purpose: str, owner_id: str, text: str) -> bytes:
    """Encrypt a file name, content type or message under the DEK.

    The owner id in the associated data stops an attacker with database
    access from moving a ciphertext to another row.
    """
    return wrap(derive(dek, "koerier/meta/v1"), text.encode("utf-8"), f"{purpose}/{owner_id}".encode())


def open_text(dek: bytes, purpose: str, owner_id: str, sealed: bytes) -> str:
    return unwrap(derive(dek, "koerier/meta/v1"), sealed, f"{purpose}/{owner_id}".encode()).decode("utf-8")

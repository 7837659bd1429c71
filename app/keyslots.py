"""Key slots: the ways a committed transfer's data key can be opened.

A password slot wraps the DEK under Argon2id(password); its parameters are
stored with the slot so they can be raised later without breaking old
transfers. A link slot (no-password mode) wraps it under a key derived from a
256-bit secret that exists only in one recipient's link. The associated data
binds each slot to its transfer and slot id, so a slot copied to another row
does not open.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from typing import Any

from .crypto.keys import SALT_BYTES, Argon2Params, derive, password_kek, unwrap, wrap
from .settings import Crypto


@dataclass(frozen=True)
class SlotData:
    id: str
    kind: str
    kdf: dict[str, Any]
    salt: bytes
    wrapped_dek: bytes

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "kdf": self.kdf, "salt": self.salt.hex(), "wrapped_dek": self.wrapped_dek.hex()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "SlotData":
        return cls(data["id"], data["kind"], data["kdf"], bytes.fromhex(data["salt"]), bytes.fromhex(data["wrapped_dek"]))


def params_from(config: Crypto) -> Argon2Params:
    return Argon2Params(config.argon2_time_cost, config.argon2_memory_kib, config.argon2_parallelism)


def _aad(transfer_id: str, slot_id: str) -> bytes:
    return f"koerier/slot/v1/{transfer_id}/{slot_id}".encode()


def password_slot(dek: bytes, transfer_id: str, password: str, params: Argon2Params) -> SlotData:
    slot_id, salt = str(uuid.uuid4()), os.urandom(SALT_BYTES)
    kek = password_kek(password, salt, params)
    kdf = {"name": "argon2id", **params.as_dict()}
    return SlotData(slot_id, "password", kdf, salt, wrap(kek, dek, _aad(transfer_id, slot_id)))


def link_slot(dek: bytes, transfer_id: str, secret: str) -> SlotData:
    slot_id, salt = str(uuid.uuid4()), os.urandom(SALT_BYTES)
    kek = derive(secret.encode(), "koerier/link/v1", salt)
    return SlotData(slot_id, "link", {"name": "hkdf-sha256"}, salt, wrap(kek, dek, _aad(transfer_id, slot_id)))


def open_slot(slot: SlotData, transfer_id: str, secret: str) -> bytes:
    """The DEK, or DecryptionError for a wrong password or secret."""
    if slot.kind == "password":
        kek = password_kek(secret, slot.salt, Argon2Params.from_dict(slot.kdf))
    else:
        kek = derive(secret.encode(), "koerier/link/v1", slot.salt)
    return unwrap(kek, slot.wrapped_dek, _aad(transfer_id, slot.id))


def burn_time(params: Argon2Params) -> None:
    """Spend what a real password check costs, so an unknown ID answers as slowly as a known one."""
    password_kek("not a password", os.urandom(SALT_BYTES), params)

"""The server secret: from the environment, or generated once into instance/.

It signs the session cookie and, through HKDF, keys the drafts' DEK wrapping
and the verification-code HMAC. It never lives in the repository.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from . import private_files

ENV_VAR = "KOERIER_SECRET_KEY"


def load_or_create(instance: Path) -> str:
    from_env = os.environ.get(ENV_VAR, "").strip()
    if from_env:
        if len(from_env) < 32:
            raise ValueError(f"{ENV_VAR} must be at least 32 characters long")
        return from_env
    path = instance / "secret_key"
    private_files.tighten(path)
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    key = secrets.token_urlsafe(48)
    # Written whole under a private name, then linked into place: two
    # workers starting at once agree on one key, and neither can read a
    # file the other has created but not yet filled.
    draft = instance / f".secret_key.{secrets.token_hex(8)}"
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, private_files.FILE_MODE)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(key + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(draft, path)
        except FileExistsError:
            return path.read_text().strip()
    finally:
        draft.unlink()
    return key

"""The server secret: from the environment, or generated once into instance/.

It signs the session cookie and, through HKDF, keys the drafts' DEK wrapping
and the verification-code HMAC. It never lives in the repository.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

ENV_VAR = "KOERIER_SECRET_KEY"


def load_or_create(instance: Path) -> str:
    from_env = os.environ.get(ENV_VAR, "").strip()
    if from_env:
        if len(from_env) < 32:
            raise ValueError(f"{ENV_VAR} must be at least 32 characters long")
        return from_env
    path = instance / "secret_key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    key = secrets.token_urlsafe(48)
    # O_EXCL: two workers starting at once must not each write their own key.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
    return key

"""Blob storage for ciphertext. Only ever sees encrypted bytes.

Keys are random and never derived from a file name, so nothing a user types
can reach the file system. A blob becomes visible under its key only when it
was written completely (write to a temporary name, then rename), so a
crashed upload never leaves a half blob that looks whole.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


class LocalBlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def new_key() -> str:
        return secrets.token_hex(16)

    def _path(self, key: str) -> Path:
        if len(key) != 32 or not all(c in "0123456789abcdef" for c in key):
            raise ValueError("malformed blob key")
        return self.root / key[:2] / key

    @contextmanager
    def create(self, key: str) -> Iterator[BinaryIO]:
        final = self._path(key)
        final.parent.mkdir(exist_ok=True)
        partial = final.with_suffix(".partial")
        try:
            with open(partial, "xb") as fh:
                yield fh
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(partial, final)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise

    def open(self, key: str) -> BinaryIO:
        return open(self._path(key), "rb")

    def size(self, key: str) -> int:
        return self._path(key).stat().st_size

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

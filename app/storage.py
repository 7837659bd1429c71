"""Blob storage for ciphertext. Only ever sees encrypted bytes.

Keys are random and never derived from a file name, so nothing a user types
can reach the file system. A blob becomes visible under its key only when it
was written completely (write to a temporary name, then rename), so a
crashed upload never leaves a half blob that looks whole.
"""

from __future__ import annotations

import fcntl
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from . import private_files


class BlobBusy(Exception):
    """Another request is writing this blob right now."""


class StorageUnavailable(Exception):
    """The store cannot be reached or cannot take blobs; from ``check``, the
    message names the setting to fix."""


class LocalBlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        private_files.make_dir(root)
        # Blobs an older version wrote readable by others end up in folders
        # that keep others out; no need to visit every blob.
        private_files.tighten(root)
        for folder in root.iterdir():
            private_files.tighten(folder)

    def check(self) -> None:
        """Raise StorageUnavailable unless a blob could be written now.

        A probe file is made and removed, which is what an upload needs: the
        folder there, and writable by the portal's user (a read-only mount,
        a changed owner and a full disk all fail here).
        """
        probe = self.root / f".probe-{secrets.token_hex(8)}"
        try:
            try:
                with private_files.create(probe) as fh:
                    fh.write(b"probe")
            finally:
                probe.unlink(missing_ok=True)
        except OSError as exc:
            raise StorageUnavailable(f"storage.blob_dir: cannot write to {self.root}: {exc.strerror or exc}") from exc

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
        final.parent.mkdir(mode=private_files.DIR_MODE, exist_ok=True)
        partial = final.with_suffix(".partial")
        try:
            with private_files.create(partial) as fh:
                yield fh
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(partial, final)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise

    def open_pending(self, key: str, create: bool = False) -> BinaryIO:
        """A blob still being written over several requests (a resumable
        upload), invisible under its key until ``publish``.

        The handle holds an exclusive lock, so two requests racing on one
        upload cannot interleave their bytes; the lock goes with the handle
        or the process. Raises BlobBusy if another handle has it, and
        FileNotFoundError if the blob is gone and ``create`` is not set.
        """
        final = self._path(key)
        final.parent.mkdir(mode=private_files.DIR_MODE, exist_ok=True)
        flags = os.O_RDWR | (os.O_CREAT | os.O_EXCL if create else 0)
        fh = os.fdopen(os.open(final.with_suffix(".partial"), flags, private_files.FILE_MODE), "r+b")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            raise BlobBusy(key) from None
        return fh

    @staticmethod
    def persist(fh: BinaryIO) -> None:
        """What was written to ``fh`` survives a crash from here on."""
        fh.flush()
        os.fsync(fh.fileno())

    def publish(self, key: str) -> None:
        final = self._path(key)
        os.replace(final.with_suffix(".partial"), final)

    def open(self, key: str) -> BinaryIO:
        return open(self._path(key), "rb")

    def size(self, key: str) -> int:
        return self._path(key).stat().st_size

    def delete(self, key: str) -> None:
        path = self._path(key)
        path.unlink(missing_ok=True)
        path.with_suffix(".partial").unlink(missing_ok=True)

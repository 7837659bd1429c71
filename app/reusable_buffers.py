"""Large I/O buffers kept for the next request instead of freed.

A buffer of a megabyte freed goes back to the allocator, which soon hands
the memory back to the system; the next request's buffer is then fresh
memory, faulted in a page at a time. An upload of 1 GiB took 60 to 95
thousand such faults, and under a hypervisor each costs more than the
bytes it holds take to encrypt. Lent from a pool, a few buffers per
process stay mapped and warm, and the memory a process holds stays put.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class BufferPool:
    """Buffers of ``size`` bytes; up to ``keep`` are kept between loans,
    any beyond are made when asked for and freed when given back."""

    def __init__(self, size: int, keep: int) -> None:
        self.size, self._keep = size, keep
        self._free: list[bytearray] = []
        self._lock = threading.Lock()

    @contextmanager
    def lend(self, *, wipe: bool = False) -> Iterator[memoryview]:
        """A buffer for the block's use. ``wipe``: zeroed when given back,
        for one that held plaintext, which would otherwise wait in memory
        for the next loan. A view of it kept beyond the block sees the next
        borrower's bytes."""
        with self._lock:
            buffer = self._free.pop() if self._free else None
        if buffer is None:
            buffer = bytearray(self.size)
        try:
            yield memoryview(buffer)
        finally:
            if wipe:
                # In place: a buffer of zeros to copy from would be a megabyte more.
                ctypes.memset((ctypes.c_char * self.size).from_buffer(buffer), 0, self.size)
            with self._lock:
                if len(self._free) < self._keep:
                    self._free.append(buffer)

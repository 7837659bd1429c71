"""A cap on Argon2id computations running at once in this process.

Each one takes tens of mebibytes and a few hundred milliseconds of every
core. Without a cap, a burst of password attempts (or plain bad luck at
nine in the morning) would take as much memory as there are threads; with
it, requests queue briefly and, past the wait, get "busy, try again".
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Argon2Busy(Exception):
    """All slots stayed taken for the whole wait."""


class Argon2Gate:
    def __init__(self, slots: int, wait_seconds: float) -> None:
        self._slots = threading.BoundedSemaphore(slots)
        self._wait = wait_seconds

    @contextmanager
    def slot(self) -> Iterator[None]:
        if not self._slots.acquire(timeout=self._wait):
            raise Argon2Busy()
        try:
            yield
        finally:
            self._slots.release()

"""A cap on Argon2id computations running at once in this process.

Each one takes tens of mebibytes and a few hundred milliseconds of every
core. Without a cap, a burst of password attempts (or plain bad luck at
nine in the morning) would take as much memory as there are threads; with
it, requests queue briefly and, past the wait, get "busy, try again".

The queue is short too (four waiters per slot): a waiting request holds a
server thread, and a burst must not take every thread from people who only
want to open a page.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Argon2Busy(Exception):
    """All slots stayed taken for the whole wait."""


class Argon2Gate:
    WAITERS_PER_SLOT = 4

    def __init__(self, slots: int, wait_seconds: float) -> None:
        self._slots = threading.BoundedSemaphore(slots)
        self._wait = wait_seconds
        self._max_waiting = slots * self.WAITERS_PER_SLOT
        self._waiting = 0
        self._lock = threading.Lock()

    @contextmanager
    def slot(self) -> Iterator[None]:
        with self._lock:
            if self._waiting >= self._max_waiting:
                raise Argon2Busy()
            self._waiting += 1
        try:
            acquired = self._slots.acquire(timeout=self._wait)
        finally:
            with self._lock:
                self._waiting -= 1
        if not acquired:
            raise Argon2Busy()
        try:
            yield
        finally:
            self._slots.release()

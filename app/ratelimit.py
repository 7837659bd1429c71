"""Rate limits kept in the database, so they hold across worker processes.

Fixed windows: a counter per (limit, subject, window start). A hit is one
INSERT ... ON CONFLICT DO UPDATE SET count = count + n RETURNING count, so
concurrent workers never lose a hit, and each learns its own position in the
window from the same statement that counted it.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from .clock import utcnow
from .db import upsert
from .models import RateCounter

EPOCH = datetime(2000, 1, 1, tzinfo=timezone.utc)


class RateLimited(Exception):
    """Refused; ``retry_at`` is when the current window ends."""

    def __init__(self, retry_at: datetime) -> None:
        super().__init__(retry_at)
        self.retry_at = retry_at


def _key(limit: str, subject: str) -> str:
    # Subjects are e-mail addresses and IPs; only a hash is stored.
    return hashlib.sha256(f"{limit}\x00{subject.lower()}".encode()).hexdigest()


def _window(now: datetime, length: timedelta) -> datetime:
    return EPOCH + (now - EPOCH) // length * length


def count(db: Session, limit: str, subject: str, window: timedelta, now: datetime | None = None) -> int:
    start = _window(now or utcnow(), window)
    return db.scalar(select(RateCounter.count).where(RateCounter.key == _key(limit, subject), RateCounter.window_start == start)) or 0


def check(db: Session, limit: str, subject: str, allowed: int, window: timedelta, now: datetime | None = None) -> None:
    """Raise RateLimited when ``allowed`` hits are used up, without counting."""
    now = now or utcnow()
    if count(db, limit, subject, window, now) >= allowed:
        raise RateLimited(_window(now, window) + window)


def hit(
    db: Session, limit: str, subject: str, allowed: int, window: timedelta, now: datetime | None = None, n: int = 1,
) -> None:
    """Count ``n`` hits at once; raise RateLimited if that goes beyond ``allowed``."""
    now = now or utcnow()
    start = _window(now, window)
    counted = db.scalar(
        upsert(
            db, RateCounter, {"key": _key(limit, subject), "window_start": start, "count": n},
            update={"count": RateCounter.count + n},
        ).returning(RateCounter.count)
    )
    if counted > allowed:
        raise RateLimited(start + window)


def refund(db: Session, limit: str, subject: str, window: timedelta, now: datetime) -> None:
    """Take back a hit counted at ``now``, for a request that turned out not to count."""
    db.execute(
        update(RateCounter)
        .where(
            RateCounter.key == _key(limit, subject), RateCounter.window_start == _window(now, window), RateCounter.count > 0
        )
        .values(count=RateCounter.count - 1)
        .execution_options(synchronize_session=False)
    )

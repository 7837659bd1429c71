"""Rate limits kept in the database, so they hold across worker processes.

Fixed windows: a counter per (limit, subject, window start). The increment is
a single UPDATE ... SET count = count + n, so concurrent workers never lose a
hit; the first hit of a window inserts the row, and a worker that loses that
insert race retries the update.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .clock import utcnow
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
    start, key = _window(now, window), _key(limit, subject)
    for _ in range(2):
        bumped = db.execute(
            update(RateCounter)
            .where(RateCounter.key == key, RateCounter.window_start == start)
            .values(count=RateCounter.count + n)
            .execution_options(synchronize_session=False)
        )
        if bumped.rowcount:
            break
        try:
            with db.begin_nested():
                db.add(RateCounter(key=key, window_start=start, count=n))
            break
        except IntegrityError:
            continue  # another worker inserted it first; count on its row
    if count(db, limit, subject, window, now) > allowed:
        raise RateLimited(start + window)

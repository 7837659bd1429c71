"""Failure counters with lockouts, shared by every worker (AccessThrottle rows).

Each failure is one atomic INSERT ... ON CONFLICT DO UPDATE ... RETURNING
that only counts while the key is not locked, so parallel requests each
learn their own place in the count and none slips past the last try. The
failure that uses the last try starts the lock at once; each next lockout
of the same key lasts twice as long, up to a ceiling.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from .db import upsert
from .models import AccessThrottle


class AccessLocked(Exception):
    def __init__(self, until: datetime) -> None:
        super().__init__(until)
        self.until = until


@dataclass(frozen=True)
class Lockout:
    """Set when a failure used the last try: the lock it started."""

    until: datetime
    minutes: int


def key(subject: str) -> str:
    return hashlib.sha256(subject.encode()).hexdigest()


def count_failure(
    db: Session, key: str, max_attempts: int, lockout_minutes: int, max_lockout_hours: int, now: datetime,
) -> tuple[int, Lockout | None]:
    """One more failure for ``key``: the tries it has left, and the lock
    this one started; or AccessLocked while it is locked."""
    not_locked = AccessThrottle.locked_until.is_(None) | (AccessThrottle.locked_until <= now)
    counted = db.execute(
        upsert(
            db, AccessThrottle, {"key": key, "failures": 1, "lockouts": 0, "updated_at": now},
            update={"failures": AccessThrottle.failures + 1, "updated_at": now}, where=not_locked,
        ).returning(AccessThrottle.failures, AccessThrottle.lockouts)
    ).one_or_none()
    if counted is None:
        raise AccessLocked(db.scalar(select(AccessThrottle.locked_until).where(AccessThrottle.key == key)))
    failures, lockouts = counted
    if failures < max_attempts:
        return max_attempts - failures, None
    minutes = min(lockout_minutes * 2**lockouts, max_lockout_hours * 60)
    lockout = Lockout(now + timedelta(minutes=minutes), minutes)
    db.execute(
        update(AccessThrottle)
        .where(AccessThrottle.key == key)
        .values(failures=0, lockouts=lockouts + 1, locked_until=lockout.until, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return 0, lockout


def locked_until(db: Session, key: str, now: datetime) -> datetime | None:
    """When the lock on ``key`` ends, if it is locked now."""
    until = db.scalar(select(AccessThrottle.locked_until).where(AccessThrottle.key == key))
    return until if until is not None and until > now else None

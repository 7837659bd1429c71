"""A database lease: exactly one process runs the clean-up job.

Taking or renewing the lease is one conditional UPDATE (mine, or expired),
so two workers can never both believe they hold it. A holder that dies
simply stops renewing, and another takes over once the lease runs out; a
run that ends normally can give it back at once (``release``).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, or_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .clock import utcnow
from .models import Lease


def acquire(db: Session, name: str, holder: str, ttl: timedelta, now: datetime | None = None) -> bool:
    """Take or renew the lease; commits. True when ``holder`` holds it now."""
    now = now or utcnow()
    taken = db.execute(
        update(Lease)
        .where(Lease.name == name, or_(Lease.holder == holder, Lease.expires_at <= now))
        .values(holder=holder, expires_at=now + ttl)
        .execution_options(synchronize_session=False)
    )
    if taken.rowcount:
        db.commit()
        return True
    try:
        db.add(Lease(name=name, holder=holder, expires_at=now + ttl))
        db.commit()
        return True
    except IntegrityError:
        db.rollback()
        return False


def release(db: Session, name: str, holder: str) -> None:
    """Give the lease back, if ``holder`` still holds it; commits."""
    db.execute(delete(Lease).where(Lease.name == name, Lease.holder == holder))
    db.commit()

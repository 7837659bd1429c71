"""The audit trail: who did what, when, from where. Facts only.

It holds addresses and IP addresses, so it is kept for
``retention.audit_months`` and no longer: ``purge`` is the one way out of
it, and the database refuses every other (see ``app.models.AuditPurge``).
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from .clock import utcnow
from .models import AuditPurge, Event

# Events deleted per transaction: a trail years deep, purged for the first
# time, must not hold SQLite's write lock for longer than a request waits.
PURGE_BATCH = 10_000


def record(
    db: Session, kind: str, *, transfer_id: str | None = None, actor: str = "", ip: str = "",
    now: datetime | None = None, **data: Any,
) -> None:
    db.add(Event(kind=kind, transfer_id=transfer_id, actor=actor, ip=ip, at=now or utcnow(), data=data))


@dataclass(frozen=True)
class Summary:
    """Events per kind, and the virus scanner's verdicts (the metric ``koerier_scans``'s results)."""

    kinds: dict[str, int]
    scans: dict[str, int]
    # Files let in without a verdict (scan.on_unavailable = "accept"); counted among "failed".
    accepted_unscanned: int


def summary(db: Session, since: datetime, until: datetime | None = None) -> Summary:
    """What happened from ``since`` on, counted."""
    window = [Event.at >= since, *([Event.at < until] if until is not None else [])]
    kinds = dict(db.execute(select(Event.kind, func.count()).where(*window).group_by(Event.kind).order_by(Event.kind)).all())
    unscanned = [e.data for e in db.scalars(select(Event).where(*window, Event.kind == "file_unscanned"))]
    scans = {
        "clean": kinds.get("file_scanned", 0),
        "infected": kinds.get("file_infected", 0),
        "too_large": sum(1 for d in unscanned if d.get("reason") == "too_large"),
        "incomplete": sum(1 for d in unscanned if d.get("reason") == "incomplete"),
        "failed": sum(1 for d in unscanned if d.get("reason") == "unavailable"),
    }
    return Summary(kinds, scans, sum(1 for d in unscanned if d.get("accepted")))


def export(db: Session, since: datetime, until: datetime | None = None) -> list[dict[str, Any]]:
    """Events in time order, as plain rows for CSV or JSON."""
    query = select(Event).where(Event.at >= since).order_by(Event.at, Event.id)
    if until is not None:
        query = query.where(Event.at < until)
    return [
        {"at": e.at.isoformat(), "kind": e.kind, "transfer_id": e.transfer_id or "", "actor": e.actor, "ip": e.ip, "data": e.data}
        for e in db.scalars(query)
    ]


def retention_cutoff(now: datetime, months: int) -> datetime:
    """The start (UTC) of the day ``months`` calendar months before ``now``'s
    day (or that month's last day): events before it are past their term.

    Whole days, so the trail loses a day at a time and the purge records
    that once a day rather than at every run of the job.
    """
    today = now.astimezone(timezone.utc).date()
    year, month = divmod(today.year * 12 + today.month - 1 - months, 12)
    day = min(today.day, calendar.monthrange(year, month + 1)[1])
    return datetime(year, month + 1, day, tzinfo=timezone.utc)


def purge(db: Session, cutoff: datetime, now: datetime | None = None) -> int:
    """Delete the oldest events before ``cutoff``, at most ``PURGE_BATCH``, and
    record how many as an ``audit_purged`` event; the number deleted.

    The permit the database demands for the deletion is written and removed
    again here, so it never reaches the caller's commit. Does not commit;
    the caller commits, or rolls back after an error.
    """
    db.execute(insert(AuditPurge).values(cutoff=cutoff))
    oldest = select(Event.id).where(Event.at < cutoff).order_by(Event.at, Event.id).limit(PURGE_BATCH)
    removed: int = db.execute(
        delete(Event).where(Event.id.in_(oldest.scalar_subquery())).execution_options(synchronize_session=False)
    ).rowcount
    db.execute(delete(AuditPurge))
    if removed:
        record(db, "audit_purged", now=now, before=cutoff.isoformat(), events=removed)
    return removed

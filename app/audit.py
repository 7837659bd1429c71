"""The audit trail: who did what, when, from where. Facts only."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .clock import utcnow
from .models import Event


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

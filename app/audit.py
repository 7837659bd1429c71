"""The audit trail: who did what, when, from where. Facts only."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from .clock import utcnow
from .models import Event


def record(
    db: Session, kind: str, *, transfer_id: str | None = None, actor: str = "", ip: str = "",
    now: datetime | None = None, **data: Any,
) -> None:
    db.add(Event(kind=kind, transfer_id=transfer_id, actor=actor, ip=ip, at=now or utcnow(), data=data))


def export(db: Session, since: datetime, until: datetime | None = None) -> list[dict[str, Any]]:
    """Events in time order, as plain rows for CSV or JSON."""
    query = select(Event).where(Event.at >= since).order_by(Event.at, Event.id)
    if until is not None:
        query = query.where(Event.at < until)
    return [
        {"at": e.at.isoformat(), "kind": e.kind, "transfer_id": e.transfer_id or "", "actor": e.actor, "ip": e.ip, "data": e.data}
        for e in db.scalars(query)
    ]

"""The audit trail: who did what, when, from where. Facts only."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from .clock import utcnow
from .models import Event


def record(
    db: Session, kind: str, *, transfer_id: str | None = None, actor: str = "", ip: str = "",
    now: datetime | None = None, **data: Any,
) -> None:
    db.add(Event(kind=kind, transfer_id=transfer_id, actor=actor, ip=ip, at=now or utcnow(), data=data))

"""The audit trail's term (``retention.audit_months``): the clean-up job
removes older events and records that it did; nothing else can remove or
change an event, not even with a permit of its own making."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import delete, func, insert, select, text, update
from sqlalchemy.exc import DatabaseError
from sqlalchemy.orm import Session

from app import audit, db, purge
from app.clock import utcnow
from app.models import AuditPurge, Event

from .conftest import Setup
from .walker import Sender


def _run(app, now: datetime) -> purge.Report:  # type: ignore[no-untyped-def]
    with app.app_context():
        return purge.run(lambda: db.new_session(app), app.extensions["koerier"], now)


def _record(app, *moments: datetime) -> None:  # type: ignore[no-untyped-def]
    """Events as a download leaves them: an address and an IP address."""
    with db.new_session(app) as s:
        for at in moments:
            audit.record(s, "file_downloaded", actor="anna@gemeente.example", ip="192.0.2.7", now=at)
        s.commit()


def _events(app) -> list[Event]:  # type: ignore[no-untyped-def]
    with db.new_session(app) as s:
        return list(s.scalars(select(Event).order_by(Event.at, Event.id)))


def _permit(s: Session, cutoff: datetime) -> None:
    """What the purge writes before it deletes; here by a caller that is not the purge."""
    s.execute(insert(AuditPurge).values(cutoff=cutoff))


def test_the_job_removes_events_past_their_term_and_records_that_it_did(sender: Sender, app) -> None:
    sender.send()
    sent_at = utcnow()
    trail = _events(app)
    assert any(e.actor == sender.person.email for e in trail) and any(e.ip == "127.0.0.1" for e in trail)

    # Almost 24 months on (the default term): everything stays; the transfer has long expired.
    report = _run(app, sent_at + timedelta(days=720))
    assert report.events_removed == 0 and report.failures == 0
    assert [e.id for e in _events(app) if e.at <= sent_at] == [e.id for e in trail]
    assert not [e for e in _events(app) if e.kind == "audit_purged"]

    later = sent_at + timedelta(days=740)
    report = _run(app, later)
    assert report.events_removed == len(trail) and report.failures == 0
    left = _events(app)
    assert not [e for e in left if e.at <= sent_at]
    assert [e.kind for e in left] == ["transfer_expired", "audit_purged"]
    purged = left[-1]
    assert purged.actor == "" and purged.ip == "" and purged.transfer_id is None
    assert purged.data == {"before": audit.retention_cutoff(later, 24).isoformat(), "events": len(trail)}
    # Once a day: the next runs that day find nothing and record nothing.
    assert _run(app, later + timedelta(minutes=5)).events_removed == 0
    assert len(_events(app)) == 2


def test_the_term_counts_calendar_months_to_the_day(make_app) -> None:
    app = make_app({"retention": {"audit_months": 1}})
    now = datetime(2026, 3, 31, 12, tzinfo=timezone.utc)
    # February 2026 has no 31st: the term starts at its last day.
    cutoff = datetime(2026, 2, 28, tzinfo=timezone.utc)
    _record(app, cutoff - timedelta(microseconds=1), cutoff)
    assert _run(app, now).events_removed == 1
    assert [(e.kind, e.at) for e in _events(app)] == [("file_downloaded", cutoff), ("audit_purged", now)]


def test_a_deep_trail_goes_in_batches_each_recorded(app) -> None:
    old = utcnow() - timedelta(days=1000)
    _record(app, *[old + timedelta(seconds=i) for i in range(audit.PURGE_BATCH + 1)])
    _record(app, utcnow())
    assert _run(app, utcnow()).events_removed == audit.PURGE_BATCH + 1
    left = _events(app)
    assert [e.data["events"] for e in left if e.kind == "audit_purged"] == [audit.PURGE_BATCH, 1]
    assert [e.kind for e in left if e.kind != "audit_purged"] == ["file_downloaded"]


def test_nothing_but_the_purge_deletes_or_changes_an_event(app, setup: Setup) -> None:
    """A caller that writes a permit itself, as a bug or an injected statement
    would, gets no further than the purge may go, and cannot keep one."""
    now = utcnow()
    old, new = now - timedelta(days=1000), now - timedelta(days=1)
    _record(app, old, new)
    with db.new_session(app) as s:
        with pytest.raises(DatabaseError, match="append-only"):
            s.execute(delete(Event).where(Event.at < now - timedelta(days=900)))
        s.rollback()
        _permit(s, now - timedelta(days=900))
        with pytest.raises(DatabaseError, match="append-only"):
            s.execute(delete(Event))
        s.rollback()
        _permit(s, now)
        with pytest.raises(DatabaseError, match="append-only"):
            s.execute(update(Event).where(Event.at == old).values(actor="", ip=""))
        s.rollback()
        if setup.name == "distributed":
            with pytest.raises(DatabaseError, match="append-only"):
                s.execute(text("TRUNCATE event"))
            s.rollback()
        # A permit cannot be committed, so no later transaction finds one.
        _permit(s, now)
        with pytest.raises(DatabaseError, match="FOREIGN KEY|foreign key"):
            s.commit()
        s.rollback()
    with db.new_session(app) as s:
        assert s.scalar(select(func.count()).select_from(AuditPurge)) == 0
        with pytest.raises(DatabaseError, match="append-only"):
            s.execute(delete(Event))
    assert [(e.at, e.actor) for e in _events(app)] == [(old, "anna@gemeente.example"), (new, "anna@gemeente.example")]


@pytest.mark.setup("distributed")  # SQLite lets one transaction write at a time: none runs beside the purge's
def test_a_permit_in_another_transaction_is_no_permit(app) -> None:
    now = utcnow()
    _record(app, now - timedelta(days=1000))
    with db.new_session(app) as purging, db.new_session(app) as other:
        _permit(purging, now)
        with pytest.raises(DatabaseError, match="append-only"):
            other.execute(delete(Event))
    assert len(_events(app)) == 1

"""The portal on PostgreSQL, the scale-out database, against a real server.

Every test that builds an app runs on PostgreSQL in the distributed setup;
these look at what only PostgreSQL has (its dialect, its trigger), so they
run there alone."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import DatabaseError

from app import db, purge
from app.models import Event, KeySlot, StoredFile, Transfer

from .walker import PASSWORD, Recipient, Sender, text_of

CONTENT = b"%PDF-1.4 rapport over PostgreSQL\n" * 3000
pytestmark = pytest.mark.setup("distributed")


def test_a_whole_transfer_on_postgresql(make_app, mailbox) -> None:
    app = make_app()
    with db.new_session(app) as session:
        assert session.get_bind().dialect.name == "postgresql"
    sender = Sender(app, mailbox)
    sent = sender.send(files=[("rapport.pdf", CONTENT)], message="Zie bijlage.")

    recipient = Recipient(app)
    assert recipient.unlock(sent.access_id("anna@gemeente.example"), "fout").status_code == 403
    assert recipient.unlock(sent.access_id("anna@gemeente.example"), PASSWORD).status_code == 302
    assert "Zie bijlage." in text_of(recipient.get("/download/transfer"))
    assert recipient.get(recipient.file_links()["rapport.pdf"]).get_data() == CONTENT

    with db.new_session(app) as session:
        expires = session.scalar(select(Transfer.expires_at))
    report = purge.run(lambda: db.new_session(app), app.extensions["koerier"], expires + timedelta(seconds=1))
    assert report.transfers_expired == 1 and report.failures == 0
    with db.new_session(app) as session:
        for model in (Transfer, KeySlot, StoredFile):
            assert session.scalar(select(func.count()).select_from(model)) == 0
        kinds = set(session.scalars(select(Event.kind)))
    assert {"transfer_created", "download_failed", "download_unlocked", "file_downloaded", "transfer_expired"} <= kinds
    assert not [p for p in app.extensions["koerier"].store.root.rglob("*") if p.is_file()]
    assert recipient.get("/download/transfer").status_code == 302


def test_the_audit_trail_is_append_only_on_postgresql(make_app) -> None:
    app = make_app()
    with db.new_session(app) as session:
        session.add(Event(kind="test", actor="jan@zorg.example"))
        session.commit()
        for statement in (update(Event).values(actor="someone else"), delete(Event)):
            with pytest.raises(DatabaseError, match="append-only"):
                session.execute(statement)
            session.rollback()
        assert session.scalar(select(Event.actor)) == "jan@zorg.example"

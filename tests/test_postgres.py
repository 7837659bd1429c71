"""The portal on PostgreSQL, the scale-out database, against a real server.

Every test that builds an app runs on PostgreSQL in the distributed setup;
these look at what only PostgreSQL has (its dialect, its trigger), so they
run there alone."""

from __future__ import annotations

import base64
import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import delete, event, func, select, update
from sqlalchemy.exc import DatabaseError
from sqlalchemy.orm import Session

from app import db, drafts, purge
from app.clock import utcnow
from app.crypto.stream import SEGMENT_SIZE
from app.models import Draft, Event, KeySlot, StoredFile, Transfer, Upload

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


def test_a_chunk_and_a_cancel_never_deadlock(make_app, mailbox) -> None:
    """A chunk's commit that touches its draft (once a minute) and the
    sender's Cancel of that upload lock the draft's row and the upload's in
    one order: the Cancel goes through, and the chunk learns its upload is
    gone. In the other order PostgreSQL aborted one of them as a deadlock."""
    app = make_app()
    sender = Sender(app, mailbox)
    sender.personal()
    sender.verify()
    sender.recipients("anna@gemeente.example")
    headers = {"Tus-Resumable": "1.0.0", "X-CSRFToken": sender.upload_token()}
    body = b"x" * 4 * SEGMENT_SIZE
    location = sender.post("/send/uploads", headers={
        **headers, "Upload-Length": str(2 * len(body)), "Upload-Metadata": "filename " + base64.b64encode(b"a.zip").decode(),
    }).headers["Location"]
    upload_id = location.rsplit("/", 1)[1]
    with db.new_session(app) as session:
        draft_id = session.scalar(select(Upload.draft_id).where(Upload.id == upload_id))
        session.execute(update(Draft).where(Draft.id == draft_id).values(updated_at=utcnow() - timedelta(minutes=2)))
        session.commit()
    cancelled: list[object] = []

    def cancel() -> None:
        try:
            with app.app_context(), db.new_session(app) as other:
                drafts.remove_file(other, app.extensions["koerier"], other.get(Draft, draft_id), upload_id)
                other.commit()
                cancelled.append("removed")
        except Exception as exc:  # noqa: BLE001  (what the test looks for)
            cancelled.append(exc)

    chunk, cancels = threading.get_ident(), []

    def cancel_while_the_chunk_commits(session: Session, *_: object) -> None:
        # The chunk's commit is about to write its draft's touch, its first lock or its second.
        if threading.get_ident() == chunk and not cancels and any(isinstance(o, Draft) for o in session.dirty):
            cancels.append(threading.Thread(target=cancel))
            cancels[0].start()
            time.sleep(0.5)  # the Cancel writes the draft's row, then waits for or takes the upload's

    event.listen(Session, "before_flush", cancel_while_the_chunk_commits)
    try:
        answer = sender.client.patch(
            location, base_url="https://portal.example.nl", data=body,
            headers={**headers, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"},
        )
    finally:
        event.remove(Session, "before_flush", cancel_while_the_chunk_commits)
        for thread in cancels:
            thread.join(30)
    assert cancels and cancelled == ["removed"]
    assert answer.status_code == 410
    with db.new_session(app) as session:
        assert session.get(Upload, upload_id) is None

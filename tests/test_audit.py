"""The audit trail: who sent what to whom, who retrieved it when. Never contents."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select

from app import db
from app.models import Event

from .conftest import Setup
from .walker import Recipient, Sender

ROOT = Path(__file__).resolve().parent.parent
SECRET_NAME = "AUDIT-NAME-5521.pdf"
SECRET_MESSAGE = "AUDIT-MESSAGE-9913"
PASSWORD = "Zonnebloem-Kade-1987!"


def _events(app) -> list[Event]:
    with app.app_context():
        return list(db.session().scalars(select(Event).order_by(Event.id)))


def test_a_transfer_leaves_a_complete_trail_without_contents(sender: Sender, app) -> None:
    sender.personal()
    code = sender.mailbox.code_for(sender.person.email)
    sender.verify("00000000" if code != "00000000" else "11111111")
    sender.verify(code)
    sent = sender.send(to="anna@gemeente.example", bcc="geheim@gemeente.example", files=[(SECRET_NAME, b"x" * 1000)], message=SECRET_MESSAGE)
    recipient = Recipient(app)
    recipient.unlock(sent.access_id("anna@gemeente.example"), "fout")
    recipient.unlock(sent.access_id("anna@gemeente.example"), PASSWORD)
    recipient.get(recipient.file_links()[SECRET_NAME])
    recipient.get("/download/all")

    events = _events(app)
    kinds = [e.kind for e in events]
    for kind in ("verification_sent", "verification_failed", "verification_succeeded", "transfer_created",
                 "download_failed", "download_unlocked", "file_downloaded", "archive_downloaded"):
        assert kind in kinds, kind
    created = next(e for e in events if e.kind == "transfer_created")
    assert created.actor == sender.person.email
    assert created.data["recipients"] == [
        {"email": "anna@gemeente.example", "kind": "to"}, {"email": "geheim@gemeente.example", "kind": "bcc"}
    ]
    assert created.data["file_count"] == 1 and created.data["total_bytes"] == 1000
    downloaded = next(e for e in events if e.kind == "file_downloaded")
    assert downloaded.actor == "anna@gemeente.example" and downloaded.ip == "127.0.0.1"
    assert downloaded.transfer_id == created.transfer_id

    dump = json.dumps([(e.kind, e.actor, e.data) for e in events])
    for secret in (SECRET_NAME, SECRET_MESSAGE, PASSWORD, "fout"):
        assert secret not in dump


def test_policy_refusals_and_lockouts_are_recorded(make_app, mailbox) -> None:
    app = make_app({"rules": [{"name": "blocked", "recipients": ["*@evil.example"], "action": "deny", "reason": "No."}]})
    sender = Sender(app, mailbox)
    sender.personal()
    sender.verify()
    sender.recipients("x@evil.example")
    sent = Sender(app, mailbox).send()
    browser = Recipient(app)
    for _ in range(5):
        browser.unlock(sent.access_id("anna@gemeente.example"), "fout")
    events = _events(app)
    refused = next(e for e in events if e.kind == "policy_refused")
    assert refused.data == {"recipients": ["x@evil.example"], "rules": ["blocked"], "refused": 1, "entered": 1}
    locked = next(e for e in events if e.kind == "download_locked")
    assert locked.data["minutes"] == 15 and locked.actor == "anna@gemeente.example"


def test_audit_export_csv_and_json(sender: Sender, app, setup: Setup) -> None:
    sender.send()
    instance = app.extensions["koerier"].instance_path
    setup.write_config(instance)
    env = {"PATH": "/usr/bin:/bin", "KOERIER_INSTANCE_PATH": str(instance)}

    def export(*args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "flask", "--app", "wsgi", "audit", "export", *args],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    rows = list(csv.DictReader(io.StringIO(export("--since", "2000-01-01"))))
    assert [r["kind"] for r in rows].count("transfer_created") == 1
    created = next(r for r in rows if r["kind"] == "transfer_created")
    assert json.loads(created["data"])["file_count"] == 1 and created["actor"] == sender.person.email
    as_json = json.loads(export("--since", "2000-01-01", "--format", "json"))
    assert [r["kind"] for r in as_json] == [r["kind"] for r in rows]
    assert json.loads(export("--since", "2999-01-01", "--format", "json")) == []


def test_the_trail_cannot_be_changed_or_deleted(sender: Sender, app) -> None:
    import pytest
    from sqlalchemy import delete, update
    from sqlalchemy.exc import DatabaseError

    sender.send()
    with app.app_context():
        s = db.session()
        with pytest.raises(DatabaseError, match="append-only"):
            s.execute(update(Event).values(actor="someone else"))
        s.rollback()
        with pytest.raises(DatabaseError, match="append-only"):
            s.execute(delete(Event))
        s.rollback()
        assert s.scalar(select(Event).where(Event.kind == "transfer_created")).actor == sender.person.email

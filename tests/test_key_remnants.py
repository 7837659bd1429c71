"""No database remnant yields a data key without the password or link secret.

The attacker has every byte of the database files (for SQLite the main file,
its WAL and shared memory; deleted rows linger in both) and the server's
secret key, but no password, no link and no browser cookie. After a full
life of several transfers (drafts, uploads, commits, downloads, notices,
withdrawal, expiry) nothing in those bytes opens under any key the server
can derive from its secret: no data key, no file name, no message.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path

import pytest

from app import access, db, drafts, purge
from app.clock import utcnow
from app.crypto.keys import new_key, wrap

from .key_scan import find_plain, find_sealed, server_keys
from .walker import BASE, PASSWORD, Recipient, Sender, csrf_token

NAME = "REMNANT-NAME-7d21f0a9.pdf"
MESSAGE = "REMNANT-MESSAGE-33c8e1b7 confidential"


def _dek(app, recipient: Recipient) -> bytes:
    with recipient.client.session_transaction(base_url=BASE) as session:
        ticket = access.GrantTicket(session["grant"]["id"], session["grant"]["secret"])
    with app.app_context():
        opened = access.open_grant(db.session(), ticket)
        assert opened is not None
        return opened.dek


def _live_a_little(app, mailbox, backup=lambda: None) -> list[bytes]:  # type: ignore[no-untyped-def]
    """Several transfers through their whole life; returns their data keys.

    ``backup`` runs while they are all live, before anything expires."""
    deks = []
    for mode in ("manual", "generate", "none"):
        sender = Sender(app, mailbox)
        extra = {} if mode == "manual" else {"password_mode": mode, "password": None, "password_repeat": None}
        sent = sender.send(files=[(NAME, os.urandom(70_000))], message=MESSAGE, notify_retrieval="y", **extra)
        recipient = Recipient(app)
        if mode == "none":
            recipient.open_link(sent.link("anna@gemeente.example"))
        else:
            secret = PASSWORD if mode == "manual" else sent.generated_password
            recipient.unlock(sent.access_id("anna@gemeente.example"), secret)
        recipient.get(recipient.file_links()[NAME])
        deks.append(_dek(app, recipient))
    # A draft left half-way, with a file and a message.
    abandoned = Sender(app, mailbox)
    abandoned.personal()
    abandoned.verify()
    abandoned.recipients("anna@gemeente.example")
    abandoned.files([(NAME, b"draft content")], message=MESSAGE, action="upload")
    # Its last step refused, with the typed password sealed in the draft for
    # the page that shows the refusal, which is never loaded.
    token = csrf_token(abandoned.get("/send/options").get_data(as_text=True))
    refused = abandoned.client.post("/send/options", base_url=BASE, data={
        "csrf_token": token, "expires_on": "2001-01-01", "recipient_language": "en", "password_mode": "manual",
        "password": PASSWORD, "password_repeat": PASSWORD,
    })
    assert refused.status_code == 303
    with abandoned.client.session_transaction(base_url=BASE) as session:
        ticket = drafts.DraftTicket.from_session(session["draft"])
    with app.app_context():
        draft = drafts.find(db.session(), app.extensions["koerier"], ticket)
        deks.append(drafts.data_key(draft))
    backup()
    # Notices go out, then everything expires and is shredded.
    with app.app_context():
        run = lambda when: purge.run(lambda: db.new_session(app), app.extensions["koerier"], when)  # noqa: E731
        run(utcnow() + timedelta(minutes=10))
        assert run(utcnow() + timedelta(days=40)).transfers_expired == 3
    return deks


def _scan(paths: list[Path], app, deks: list[bytes]) -> None:
    keys = server_keys(app.extensions["koerier"].server_secret)
    secrets = [*deks, NAME.encode(), MESSAGE.encode()[:32], PASSWORD.encode()]
    scanned = 0
    for path in paths:
        blob = path.read_bytes()
        scanned += len(blob)
        assert find_plain(blob, secrets) == [], path
        assert find_sealed(blob, keys, secrets) == [], path
    assert scanned > 0


def test_the_scan_finds_a_key_sealed_under_a_server_key(app) -> None:
    """The search itself works: a data key wrapped under a server key, among noise, is found."""
    secret = app.extensions["koerier"].server_secret
    keys = server_keys(secret)
    assert "koerier/verification/v1" in keys
    dek = new_key()
    blob = os.urandom(5000) + wrap(keys["koerier/verification/v1"], dek, b"any/associated/data") + b"\0" * 9000
    assert find_sealed(blob, keys, [dek]) == [("koerier/verification/v1", 5000, dek)]


# The SQLite files are the embedded setup's; PostgreSQL's are looked at below.
@pytest.mark.setup("embedded")
def test_sqlite_files_hold_no_key_the_server_can_open(app, mailbox) -> None:
    deks = _live_a_little(app, mailbox)
    instance = app.extensions["koerier"].instance_path
    database = sorted(instance.glob("koerier.sqlite3*"))
    assert {p.name for p in database} >= {"koerier.sqlite3", "koerier.sqlite3-wal"}
    _scan(database, app, deks)


@pytest.mark.setup("embedded")
def test_an_expired_transfer_leaves_no_personal_data_in_the_sqlite_files(app, mailbox) -> None:
    """Beyond keys: what the audit trail does not keep (phone, subject, text)
    is gone from the files once the transfer has expired and been purged."""
    sender = Sender(app, mailbox)
    sender.person.phone = "0592 771188"
    sender.mailbox.clear()
    sender.personal()
    sender.verify()
    sender.recipients("anna@gemeente.example")
    sender.files([("a.pdf", b"%PDF")])
    sender.options()
    assert sender.notification(subject="REMNANT-SUBJECT-51f2", body="REMNANT-BODY-8a0c").status_code == 200
    with app.app_context():
        purge.run(lambda: db.new_session(app), app.extensions["koerier"], utcnow() + timedelta(days=40))
    instance = app.extensions["koerier"].instance_path
    for path in instance.glob("koerier.sqlite3*"):
        blob = path.read_bytes()
        for marker in (b"0592 771188", b"REMNANT-SUBJECT-51f2", b"REMNANT-BODY-8a0c"):
            assert marker not in blob, (marker, path)


@pytest.mark.setup("distributed")
def test_postgresql_files_and_dump_hold_no_key_the_server_can_open(app, mailbox, pg_database) -> None:
    """Dead tuples, WAL segments and a pg_dump: nothing opens with the server's secret alone."""
    dumps = []
    deks = _live_a_little(app, mailbox, backup=lambda: dumps.append(pg_database.dump()))
    files = pg_database.files()
    assert any(p.parent.name == "pg_wal" for p in files)
    _scan(files, app, deks)
    # The plain dump writes bytea values as hex; each is scanned as the bytes it stands for.
    (dump,) = dumps
    values = [bytes.fromhex(h.decode()) for h in re.findall(rb"\\\\x([0-9a-f]+)", dump)]
    assert len(values) > 10
    dump_file = app.extensions["koerier"].instance_path / "dump.bin"
    dump_file.write_bytes(dump + b"".join(v + b"\0" * 64 for v in values))
    _scan([dump_file], app, deks)


def test_the_commit_deletes_the_draft_and_the_browser_forgets_its_secret(app, mailbox) -> None:
    from sqlalchemy import func, select

    from app.models import Draft

    sender = Sender(app, mailbox)
    sender.personal()
    sender.verify()
    with sender.client.session_transaction(base_url=BASE) as session:
        ticket = drafts.DraftTicket.from_session(session["draft"])
    sender.recipients("anna@gemeente.example")
    sender.files([(NAME, b"content")])
    sender.finish()
    with app.app_context():
        assert db.session().scalar(select(func.count()).select_from(Draft)) == 0
        assert drafts.find(db.session(), app.extensions["koerier"], ticket) is None
    with sender.client.session_transaction(base_url=BASE) as session:
        assert "draft" not in session and ticket.secret not in str(dict(session))

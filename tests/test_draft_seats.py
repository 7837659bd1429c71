"""Open drafts per client network: nothing an unverified client does locks
a network out of sending; drafts that hold files are still capped.

The attack: an office NAT (or a CGNAT) shares one address. Quick posts of
the personal step, from fresh browsers and without verifying any address,
each left a draft holding a seat of the network's cap for a day, and so
locked every colleague behind that address out of sending.
"""

from __future__ import annotations

import base64
import html
from datetime import timedelta

from sqlalchemy import func, select

from app import db, purge
from app.clock import utcnow
from app.db import new_session
from app.models import Draft, StoredFile

from .walker import Person, Sender, csrf_token, text_of

# The verification mails' own limits per address are not what this is about.
MANY_MAILS = {"verification_mails_per_ip_per_hour": 1000, "verification_mails_per_address_per_ip_per_day": 1000}


def drafts_in(app) -> int:  # type: ignore[no-untyped-def]
    with app.app_context():
        return db.session().scalar(select(func.count()).select_from(Draft))


def at_files(app, mailbox, email: str) -> Sender:  # type: ignore[no-untyped-def]
    sender = Sender(app, mailbox, Person(email=email))
    assert sender.personal().status_code == 302
    assert sender.verify().status_code == 302
    assert sender.recipients("anna@gemeente.example").status_code == 302
    return sender


def tus_create(sender: Sender, length: int = 10) -> tuple[int, dict]:
    headers = {
        "Tus-Resumable": "1.0.0", "X-CSRFToken": sender.upload_token(), "Upload-Length": str(length),
        "Upload-Metadata": "filename " + base64.b64encode(b"scan.pdf").decode(),
    }
    r = sender.post("/send/uploads", headers=headers)
    return r.status_code, (r.get_json() or {}) if r.status_code != 201 else {}


def test_unverified_posts_do_not_lock_a_network_out(make_app, mailbox) -> None:
    app = make_app({"limits": {**MANY_MAILS, "open_drafts_per_ip": 50}})
    for n in range(55):
        mallory = Sender(app, mailbox, Person(name="Mallory", email=f"m{n}@evil.example"))
        assert mallory.personal().status_code == 302

    # A colleague behind the same address starts, verifies and adds a file.
    colleague = at_files(app, mailbox, "jan@zorg.example")
    assert colleague.files([("verslag.pdf", b"%PDF-1.4")], action="upload").status_code == 302


def test_a_refused_personal_post_leaves_no_draft(make_app, mailbox) -> None:
    app = make_app({"limits": {**MANY_MAILS, "verification_mails_per_ip_per_hour": 2}})
    for n in range(2):
        assert Sender(app, mailbox, Person(email=f"p{n}@zorg.example")).personal().status_code == 302
    refused = Sender(app, mailbox, Person(name="Kees Klaassen", email="kees@zorg.example"))
    r = refused.personal()
    assert r.status_code == 429
    assert "Kees Klaassen" in text_of(r) and "kees@zorg.example" in text_of(r)  # what was typed is kept
    assert drafts_in(app) == 2


def test_a_new_transaction_discards_the_browsers_draft(make_app, mailbox) -> None:
    app = make_app({"limits": {"open_drafts_per_ip": 1}})
    jan = at_files(app, mailbox, "jan@zorg.example")
    assert jan.files([("verslag.pdf", b"%PDF-1.4")], action="upload").status_code == 302
    store = app.extensions["koerier"].store.root
    assert [p for p in store.rglob("*") if p.is_file()]

    token = csrf_token(jan.get("/send/files").get_data(as_text=True))
    assert jan.post("/send/new", data={"csrf_token": token}).status_code == 302
    assert drafts_in(app) == 0
    assert not [p for p in store.rglob("*") if p.is_file()]
    # Its seat in the network's cap is free again.
    piet = at_files(app, mailbox, "piet@zorg.example")
    assert piet.files([("verslag.pdf", b"%PDF-1.4")], action="upload").status_code == 302


def test_drafts_holding_files_are_capped_per_network(make_app, mailbox) -> None:
    app = make_app({"limits": {"open_drafts_per_ip": 2}})
    jan, piet = at_files(app, mailbox, "jan@zorg.example"), at_files(app, mailbox, "piet@zorg.example")
    for sender in (jan, piet):
        assert sender.files([("a.pdf", b"%PDF")], action="upload").status_code == 302
    limit = "From your network, 2 unfinished transfers already hold files: the most allowed at once."

    # A third sender from the network gets as far as the files, and no further.
    kees = at_files(app, mailbox, "kees@zorg.example")
    status, answer = tus_create(kees)
    assert status == 429 and answer["error"].startswith(limit)
    page = kees.files([("b.pdf", b"%PDF")], message="Zie bijlage", action="upload")
    assert page.status_code == 429
    assert limit in text_of(page)
    assert "Zie bijlage" in html.unescape(page.get_data(as_text=True))  # what was typed is kept
    with app.app_context():
        assert db.session().scalar(select(func.count()).select_from(StoredFile)) == 2

    # A transfer sent frees its draft's seat...
    jan.finish()
    assert tus_create(kees)[0] == 201
    # ... and so does a draft removed after its idle time.
    assert tus_create(at_files(app, mailbox, "klaas@zorg.example"))[0] == 429
    with app.app_context():
        later = utcnow() + timedelta(hours=app.config["KOERIER"].transfer.draft_ttl_hours + 1)
        purge.run(lambda: new_session(app), app.extensions["koerier"], now=later)
    assert tus_create(at_files(app, mailbox, "klaas@zorg.example"))[0] == 201

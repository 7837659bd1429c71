"""Whoever holds one password (or no-password link) cannot make the portal
mail the sender once per download session, nor open sessions without end."""

from __future__ import annotations

from datetime import timedelta

import pytest

from app import access, db, purge, ratelimit
from app.clock import utcnow

from .test_ratelimit import attempt
from .walker import PASSWORD, Recipient, Sender, text_of


def _run_job(app, at):  # type: ignore[no-untyped-def]
    with app.app_context():
        return purge.run(lambda: db.new_session(app), app.extensions["koerier"], at)


def _notices(mailbox, sender: Sender) -> list:
    return [m for m in mailbox.to(sender.person.email) if "has downloaded" in m.message["Subject"]]


def _one_byte_session(app, access_id: str) -> None:
    """Open, fetch one byte of the first file, close: a whole download session."""
    recipient = Recipient(app)
    assert recipient.unlock(access_id, PASSWORD).status_code == 302
    url = next(iter(recipient.file_links().values()))
    assert recipient.get(url, headers={"Range": "bytes=0-0"}).status_code == 206
    assert recipient.submit("/download/finish", page="/download/transfer").status_code == 302


def test_many_download_sessions_of_one_recipient_make_one_notice(sender: Sender, app, mailbox) -> None:
    sent = sender.send(notify_retrieval="y")
    access_id = sent.access_id("anna@gemeente.example")
    for _ in range(14):
        _one_byte_session(app, access_id)
    assert _run_job(app, utcnow() + timedelta(minutes=10)).notices_sent == 1
    (mail,) = _notices(mailbox, sender)
    # The first ten sessions are listed, the rest counted: the mail's size is bounded.
    assert "Download session 10:" in mail.text and "Download session 11:" not in mail.text
    assert "4 more download sessions are not listed here" in mail.text
    # Nothing more to tell.
    assert _run_job(app, utcnow() + timedelta(minutes=20)).notices_sent == 0


def test_at_most_one_notice_per_recipient_in_the_quiet_time(make_app, mailbox) -> None:
    app = make_app({"retention": {"notice_quiet_minutes": 30}})
    sender = Sender(app, mailbox)
    access_id = sender.send(notify_retrieval="y").access_id("anna@gemeente.example")
    _one_byte_session(app, access_id)  # finished: due at once
    now = utcnow()
    assert _run_job(app, now + timedelta(minutes=1)).notices_sent == 1
    _one_byte_session(app, access_id)
    assert _run_job(app, now + timedelta(minutes=2)).notices_sent == 0
    assert _run_job(app, now + timedelta(minutes=32)).notices_sent == 1
    assert len(_notices(mailbox, sender)) == 2


def test_the_unlocks_of_one_recipient_id_are_capped_per_hour(make_app, mailbox) -> None:
    app = make_app({"limits": {"unlocks_per_recipient_per_hour": 3}})
    sent = Sender(app, mailbox).send(to="anna@gemeente.example", cc="kees@gemeente.example")
    anna, kees = sent.access_id("anna@gemeente.example"), sent.access_id("kees@gemeente.example")
    for _ in range(3):
        assert Recipient(app).unlock(anna, PASSWORD).location.endswith("/download/transfer")
    refused = Recipient(app)
    r = refused.unlock(anna, PASSWORD)
    assert r.status_code == 429 and r.headers["Retry-After"]
    assert "Too many attempts. Please try again after" in text_of(r)
    assert refused.get("/download/transfer").status_code == 302  # no grant
    # Another recipient's ID has its own count, and the next hour a new one.
    assert Recipient(app).unlock(kees, PASSWORD).location.endswith("/download/transfer")
    # Refused openings with the right password are no wrong guesses: they lock nothing.
    for _ in range(app.extensions["koerier"].settings.download.max_attempts):
        with pytest.raises(ratelimit.RateLimited):
            attempt(app, anna, PASSWORD)
    with pytest.raises(access.AccessDenied):
        attempt(app, anna, "fout")
    assert attempt(app, anna, PASSWORD, now=utcnow() + timedelta(hours=1))

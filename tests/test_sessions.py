"""How long a browser stays somebody: the session's timeouts, and the
verified sender address that lives with the session or in its own cookie."""

from __future__ import annotations

import re
import time
from datetime import timedelta

from sqlalchemy import update

from app import db
from app.clock import utcnow
from app.models import Draft

from .walker import BASE, Sender, multipart, text_of


def test_the_absolute_timeout_ends_a_session_that_is_still_active(make_app, mailbox) -> None:
    app = make_app({"site": {"session_absolute_hours": 12, "session_idle_minutes": 60}})
    sender = Sender(app, mailbox)
    sender.personal()
    for hours, still_there in ((11, True), (13, False)):
        # Started that long ago, and busy until a moment ago: never idle.
        with sender.client.session_transaction(base_url=BASE) as session:
            session["_started"] = time.time() - hours * 3600
            session["_seen"] = time.time() - 10
        r = sender.get("/send/verify")
        assert (r.status_code == 200) is still_there, hours
    said = flashes(sender.get(r.location))
    assert r.location.endswith("/send/") and "Your session ended: for your safety a session lasts at most 12 hours." in said


def flashes(response) -> str:  # type: ignore[no-untyped-def]
    """The messages at the top of the page."""
    found = re.search(r'<div class="flashes".*?</div>', text_of(response), re.S)
    return found.group(0) if found else ""


def _idle_for(sender: Sender, minutes: int) -> None:
    with sender.client.session_transaction(base_url=BASE) as session:
        session["_started"] = session["_seen"] = time.time() - minutes * 60


def test_after_an_idle_timeout_the_next_page_says_what_happened(make_app, mailbox) -> None:
    app = make_app({"site": {"session_idle_minutes": 20}})
    sender = Sender(app, mailbox)
    sender.get("/lang/nl")
    sender.personal()
    sender.verify()
    sender.recipients("anna@gemeente.example")
    token = sender.upload_token()
    _idle_for(sender, 21)
    # "Next" on the files page, left open too long.
    body, content_type = multipart([("csrf_token", token), ("message", "Vertrouwelijk"), ("action", "next")])
    r = sender.post("/send/files", data=body, content_type=content_type)
    assert r.status_code == 302 and r.location.endswith("/send/")
    said = flashes(sender.get(r.location))
    # In the language chosen before, which the end of the session keeps.
    assert "Uw sessie is beëindigd na 20 minuten zonder activiteit" in said
    assert "verlopen" not in said
    # Said once.
    assert flashes(sender.get("/send/")) == ""


def test_a_deep_link_without_a_session_starts_at_step_one_without_talk_of_expiry(app, mailbox) -> None:
    sender = Sender(app, mailbox)
    for step in ("verify", "recipients", "files", "options", "notification"):
        r = sender.get(f"/send/{step}")
        assert r.status_code == 302 and r.location.endswith("/send/"), step
        assert flashes(sender.get(r.location)) == "", step


def test_a_draft_that_is_gone_is_called_expired(make_app, mailbox) -> None:
    app = make_app({"transfer": {"draft_ttl_hours": 1}})
    sender = Sender(app, mailbox)
    sender.personal()
    with app.app_context():
        db.session().execute(update(Draft).values(updated_at=utcnow() - timedelta(hours=2)))
        db.session().commit()
    r = sender.get("/send/verify")
    assert r.location.endswith("/send/")
    assert "Your session has expired. Please start again." in flashes(sender.get(r.location))


def test_stay_signed_in_extends_the_session(make_app, mailbox) -> None:
    app = make_app({"site": {"session_idle_minutes": 20, "session_absolute_hours": 2}})
    sender = Sender(app, mailbox)
    assert sender.get("/session").json == {"idle": 0, "absolute": 0}  # nothing to lose, nothing to warn about
    sender.personal()
    _idle_for(sender, 18)
    page = sender.get("/send/verify").get_data(as_text=True)
    assert 'data-session-left="1200"' in page or 'data-session-left="1199"' in page
    _idle_for(sender, 18)
    left = sender.get("/session").json
    assert 1190 <= left["idle"] <= 1200 and 2 * 3600 - 18 * 60 - 10 <= left["absolute"] <= 2 * 3600 - 18 * 60
    _idle_for(sender, 19)
    assert sender.get("/session").json["idle"] >= 1190
    assert sender.get("/send/verify").status_code == 200


def test_a_session_only_verification_ends_with_the_idle_session(make_app, mailbox, monkeypatch) -> None:
    app = make_app({"site": {"session_idle_minutes": 5}})
    sender = Sender(app, mailbox)
    sender.personal()
    sender.verify()
    assert sender.personal().location.endswith("/send/recipients")
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 6 * 60)
    assert sender.personal().location.endswith("/send/verify")


def test_a_session_only_verification_ends_with_the_absolute_timeout(app, mailbox) -> None:
    sender = Sender(app, mailbox)
    sender.personal()
    sender.verify()
    with sender.client.session_transaction(base_url=BASE) as session:
        session["_started"] = time.time() - 13 * 3600
        session["_seen"] = time.time() - 10
    assert sender.personal().location.endswith("/send/verify")


def test_a_remembered_sender_cookie_is_host_bound_in_https_mode(make_app, mailbox) -> None:
    app = make_app({"verification": {"remember_days": 30}})
    sender = Sender(app, mailbox)
    sender.personal()
    r = sender.verify()
    cookie = next(c for c in r.headers.getlist("Set-Cookie") if "koerier_sender=" in c)
    assert cookie.startswith("__Host-koerier_sender=")
    assert "Secure" in cookie and "Path=/" in cookie and "Domain=" not in cookie
    # It outlives the session: a new session in this browser skips the code.
    sender.client.delete_cookie("__Host-koerier", domain="portal.example.nl")
    assert sender.personal().location.endswith("/send/recipients")


def test_a_remembered_sender_cookie_without_https(make_app, mailbox) -> None:
    app = make_app({"site": {"base_url": "http://portal.example.nl"}, "verification": {"remember_days": 30}})
    sender = Sender(app, mailbox)
    sender.personal()
    cookie = next(c for c in sender.verify().headers.getlist("Set-Cookie") if "koerier_sender=" in c)
    assert cookie.startswith("koerier_sender=") and "Secure" not in cookie

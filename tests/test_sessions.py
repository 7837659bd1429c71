"""How long a browser stays somebody: the session's timeouts, and the
verified sender address that lives with the session or in its own cookie."""

from __future__ import annotations

import time

from .walker import BASE, Sender, text_of


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
    assert r.location.endswith("/send/") and "Your session has expired" in text_of(sender.get(r.location))


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

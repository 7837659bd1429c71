"""Rate limits trip and recover; they are shared by every app on one database."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from app import access, db, ratelimit, verification
from app.clock import utcnow
from app.ids import group, new_access_id
from app.models import KeySlot, Transfer

from .walker import Recipient, Sender, text_of

HOUR = timedelta(hours=1)


def test_counter_trips_and_recovers_in_the_next_window(app) -> None:
    now = utcnow().replace(minute=10)
    with app.app_context():
        s = db.session()
        for _ in range(3):
            ratelimit.hit(s, "demo", "1.2.3.4", 3, HOUR, now)
        with pytest.raises(ratelimit.RateLimited) as exc:
            ratelimit.hit(s, "demo", "1.2.3.4", 3, HOUR, now)
        assert exc.value.retry_at == now.replace(minute=0, second=0, microsecond=0) + HOUR
        ratelimit.hit(s, "demo", "5.6.7.8", 3, HOUR, now)  # another subject is not affected
        ratelimit.hit(s, "demo", "1.2.3.4", 3, HOUR, now + HOUR)  # next window


def test_two_app_instances_share_counters(make_app, tmp_path) -> None:
    first, second = make_app(instance=tmp_path / "one"), make_app(instance=tmp_path / "one")
    now = utcnow()
    with first.app_context():
        s = db.session()
        ratelimit.hit(s, "demo", "x", 2, HOUR, now)
        s.commit()
    with second.app_context():
        s = db.session()
        ratelimit.hit(s, "demo", "x", 2, HOUR, now)
        s.commit()
    with first.app_context():
        with pytest.raises(ratelimit.RateLimited):
            ratelimit.hit(db.session(), "demo", "x", 2, HOUR, now)


def test_verification_mails_per_address_and_browser_and_per_address_and_network_per_day(make_app, mailbox) -> None:
    app = make_app({
        "verification": {"resend_cooldown_seconds": 0},
        "limits": {"verification_mails_per_address_per_hour": 2, "verification_mails_per_address_per_ip_per_day": 3},
    })
    portal = app.extensions["koerier"]
    now = utcnow()
    with app.test_request_context():
        s = db.session()
        verification.send_code(s, portal, "a@zorg.example", "browser-1", "en", ip="10.0.0.1", now=now)
        verification.send_code(s, portal, "a@zorg.example", "browser-1", "en", ip="10.0.0.1", now=now)
        with pytest.raises(ratelimit.RateLimited):
            verification.send_code(s, portal, "a@zorg.example", "browser-1", "en", ip="10.0.0.1", now=now)
        # Another browser has its own hourly quota for the same address ...
        verification.send_code(s, portal, "a@zorg.example", "browser-2", "en", ip="10.0.0.1", now=now)
        # ... but all browsers of one network together stop at the daily cap, until the next day ...
        with pytest.raises(ratelimit.RateLimited) as exc:
            verification.send_code(s, portal, "a@zorg.example", "browser-3", "en", ip="10.0.0.1", now=now)
        assert exc.value.retry_at == now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
        verification.send_code(s, portal, "a@zorg.example", "browser-3", "en", ip="10.0.0.1", now=now + timedelta(days=1))
        # ... while another network still has its own.
        verification.send_code(s, portal, "a@zorg.example", "browser-4", "en", ip="10.0.0.2", now=now)
    assert len(mailbox.to("a@zorg.example")) == 5


def test_verification_mails_per_ip_shows_when_to_retry(make_app, mailbox) -> None:
    app = make_app({"limits": {"verification_mails_per_ip_per_hour": 2}})
    for n in range(2):
        assert Sender(app, mailbox).personal(email=f"p{n}@zorg.example").status_code == 302
    r = Sender(app, mailbox).personal(email="p9@zorg.example")
    assert r.status_code == 429
    page = text_of(r)
    assert "Too many attempts. Please try again after" in page and "p9@zorg.example" in page
    assert mailbox.to("p9@zorg.example") == []


def test_failed_downloads_per_ip(make_app, mailbox) -> None:
    app = make_app({"limits": {"failed_downloads_per_ip_per_hour": 3}})
    browser = Recipient(app)
    for _ in range(3):
        assert browser.unlock(group(new_access_id()), "x").status_code == 403
    r = browser.unlock(group(new_access_id()), "x")
    assert r.status_code == 429 and "Retry-After" in r.headers
    assert "Too many attempts" in text_of(r)


def test_client_ip_honours_forwarded_for_only_behind_trusted_proxies(make_app, mailbox, tmp_path) -> None:
    forged = {"X-Forwarded-For": "203.0.113.9"}
    for trusted, expected in ((0, "127.0.0.1"), (1, "203.0.113.9")):
        app = make_app({"site": {"trusted_proxies": trusted}}, instance=tmp_path / str(trusted))
        Recipient(app).submit("/download/", {"transaction_id": "x", "password": "y"}, headers=forged)
        with app.app_context():
            from app.models import Event

            # The distributed setup's apps share one database: the latest attempt is this one.
            failed = select(Event).where(Event.kind == "download_failed").order_by(Event.id.desc())
            event = db.session().scalars(failed).first()
            assert event.ip == expected


def test_transactions_per_sender_per_day(make_app, mailbox) -> None:
    app = make_app({"limits": {"transactions_per_sender_per_day": 1}})
    sender = Sender(app, mailbox)
    sender.send()
    sender.personal()
    sender.recipients("anna@gemeente.example")
    sender.files([("a.pdf", b"1")])
    sender.options()
    r = sender.notification()
    assert r.status_code == 429 and "Too many attempts" in text_of(r)
    with app.app_context():
        assert db.session().query(Transfer).count() == 1


def attempt(app, typed_id: str, secret: str, **kw) -> access.GrantTicket:  # type: ignore[no-untyped-def]
    """One unlock attempt as a request makes it: its own session, committed whatever the answer."""
    with app.test_request_context():
        s = db.session()
        try:
            return access.unlock(s, app.extensions["koerier"], typed_id, secret, **kw)
        finally:
            s.commit()


def test_lockouts_grow_and_the_sender_is_told(sender: Sender, app, mailbox) -> None:
    sent = sender.send()
    real = sent.access_id("anna@gemeente.example")
    now = utcnow()
    durations = []
    for round_ in range(3):
        for _ in range(5):
            with pytest.raises(access.AccessDenied):
                attempt(app, real, "wrong", now=now)
        with pytest.raises(access.AccessLocked) as exc:
            attempt(app, real, "wrong", now=now)
        durations.append(exc.value.until - now)
        now = exc.value.until + timedelta(seconds=1)
    assert durations == [timedelta(minutes=15), timedelta(minutes=30), timedelta(minutes=60)]
    # The right password after the lockout resets the back-off.
    assert attempt(app, real, "Zonnebloem-Kade-1987!", now=now)
    for _ in range(5):
        with pytest.raises(access.AccessDenied):
            attempt(app, real, "wrong", now=now)
    with pytest.raises(access.AccessLocked) as exc:
        attempt(app, real, "wrong", now=now)
    assert exc.value.until - now == timedelta(minutes=15)
    notices = [m for m in mailbox.to(sender.person.email) if "Wrong passwords" in m.message["Subject"]]
    assert len(notices) == 4
    assert "anna@gemeente.example" in notices[0].text and "locked until" in notices[0].text


def test_delete_on_lockout_shreds_the_transfer(make_app, mailbox) -> None:
    app = make_app({"download": {"delete_on_lockout": True}})
    sender = Sender(app, mailbox)
    sent = sender.send()
    real = sent.access_id("anna@gemeente.example")
    browser = Recipient(app)
    for _ in range(5):
        browser.unlock(real, "wrong")
    store = app.extensions["koerier"].store.root
    assert not [p for p in store.rglob("*") if p.is_file()]
    with app.app_context():
        s = db.session()
        assert s.query(Transfer).count() == 0 and s.query(KeySlot).count() == 0
    assert browser.unlock(real, "Zonnebloem-Kade-1987!").status_code == 429  # locked, then gone
    deleted = [m for m in mailbox.to(sender.person.email) if "was deleted" in m.message["Subject"]]
    assert len(deleted) == 1


def test_verification_per_ip_recovers_next_hour(make_app, mailbox) -> None:
    app = make_app({"limits": {"verification_mails_per_ip_per_hour": 1}})
    portal = app.extensions["koerier"]
    now = utcnow()
    with app.test_request_context():
        s = db.session()
        verification.send_code(s, portal, "a@zorg.example", "browser-1", "en", ip="10.9.9.9", now=now)
        with pytest.raises(ratelimit.RateLimited):
            verification.send_code(s, portal, "b@zorg.example", "browser-1", "en", ip="10.9.9.9", now=now)
        verification.send_code(s, portal, "b@zorg.example", "browser-1", "en", ip="10.9.9.9", now=now + HOUR)


def test_failed_downloads_per_ip_recover_next_hour(make_app) -> None:
    app = make_app({"limits": {"failed_downloads_per_ip_per_hour": 2}})
    now = utcnow()
    for _ in range(2):
        with pytest.raises(access.AccessDenied):
            attempt(app, group(new_access_id()), "x", ip="10.1.1.1", now=now)
    with pytest.raises(ratelimit.RateLimited):
        attempt(app, group(new_access_id()), "x", ip="10.1.1.1", now=now)
    with pytest.raises(access.AccessDenied):  # judged again, not refused outright
        attempt(app, group(new_access_id()), "x", ip="10.1.1.1", now=now + HOUR)

"""The e-mail verification code: CSPRNG, hashed, single use, expiring, limited."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from app import db, verification
from app.clock import utcnow
from app.models import VerificationCode

from .conftest import Setup
from .walker import Sender, csrf_token, text_of


def test_code_is_stored_only_as_hmac(sender: Sender, app, setup: Setup) -> None:
    sender.personal()
    code = sender.mailbox.code_for(sender.person.email)
    assert len(code) == 8
    with app.app_context():
        row = db.session().scalar(select(VerificationCode))
        assert code.encode() not in row.code_hash and len(row.code_hash) == 32
    for path in setup.files_at_rest(app.extensions["koerier"].instance_path):
        assert code.encode() not in path.read_bytes(), path


def test_wrong_codes_count_down_then_lock(sender: Sender) -> None:
    sender.personal()
    real = sender.mailbox.code_for(sender.person.email)
    wrong = "00000000" if real != "00000000" else "11111111"
    for left in (4, 3, 2):
        assert f"You have {left} more attempts." in text_of(sender.verify(wrong))
    assert "You have 1 more attempt." in text_of(sender.verify(wrong))
    assert "Too many wrong attempts. Please ask for a new code." in text_of(sender.verify(wrong))
    # Even the right code no longer works.
    r = sender.verify(real)
    assert r.status_code == 422 and "Too many wrong attempts" in text_of(r)


def test_code_is_single_use(sender: Sender, make_app, mailbox) -> None:
    sender.personal()
    code = sender.mailbox.code_for(sender.person.email)
    assert sender.verify(code).status_code == 302
    other = Sender(sender.app, mailbox)  # another browser, same address
    other.personal()
    mailbox.clear()
    r = other.verify(code)
    assert r.status_code == 422 and "not correct" in text_of(r)


def test_resend_replaces_the_code_after_cooldown(make_app, mailbox) -> None:
    app = make_app({"verification": {"resend_cooldown_seconds": 0}})
    sender = Sender(app, mailbox)
    sender.personal()
    first = mailbox.code_for(sender.person.email)
    page = sender.get("/send/verify").get_data(as_text=True)
    r = sender.post("/send/verify/resend", data={"csrf_token": csrf_token(page)})
    assert r.status_code == 302
    assert "A new code has been sent" in text_of(sender.get("/send/verify"))
    second = mailbox.code_for(sender.person.email)
    # Two random 8-digit codes are equal once in 10^8 runs.
    assert "not correct" in text_of(sender.verify(first))
    assert sender.verify(second).status_code == 302


def test_resend_within_cooldown_is_refused(sender: Sender, mailbox) -> None:
    sender.personal()
    page = sender.get("/send/verify").get_data(as_text=True)
    sender.post("/send/verify/resend", data={"csrf_token": csrf_token(page)})
    assert "Please wait" in text_of(sender.get("/send/verify"))
    assert len(mailbox.to(sender.person.email)) == 1


def test_code_expires(app, sender: Sender) -> None:
    portal = app.extensions["koerier"]
    with app.test_request_context():
        s = db.session()
        verification.send_code(s, portal, "late@zorg.example", "browser-1", "en")
        s.commit()
    code = sender.mailbox.code_for("late@zorg.example")
    late, in_time = utcnow() + timedelta(minutes=16), utcnow() + timedelta(minutes=14)
    with app.test_request_context():
        s = db.session()
        with pytest.raises(verification.CodeRejected) as exc:
            verification.check_code(s, portal, "late@zorg.example", "browser-1", code, now=late)
        assert exc.value.reason == "expired"
        verification.check_code(s, portal, "late@zorg.example", "browser-1", code, now=in_time)


def test_verified_address_is_remembered_per_browser(make_app, mailbox) -> None:
    app = make_app({"verification": {"remember_days": 30}})
    sender = Sender(app, mailbox)
    sender.personal()
    r = sender.verify()
    cookie = r.headers.getlist("Set-Cookie")
    remembered = [c for c in cookie if c.startswith("__Host-koerier_sender=")]
    assert remembered and "Max-Age=2592000" in remembered[0] and "HttpOnly" in remembered[0]
    assert "Secure" in remembered[0] and "Path=/" in remembered[0] and "Domain=" not in remembered[0]
    # Another address in the same browser must be verified again.
    mailbox.clear()
    assert sender.personal(email="ander@zorg.example").location.endswith("/send/verify")


def test_session_only_by_default(sender: Sender) -> None:
    sender.personal()
    r = sender.verify()
    # Kept in the session, which the idle and absolute timeouts end (tests/test_sessions.py).
    assert not [c for c in r.headers.getlist("Set-Cookie") if "koerier_sender=" in c]
    assert sender.personal().location.endswith("/send/recipients")


def test_another_browser_cannot_burn_a_senders_code_or_quota(make_app, mailbox) -> None:
    """Someone typing the victim's address uses up only their own browser's tries and mails."""
    app = make_app({"verification": {"resend_cooldown_seconds": 0}})
    victim, attacker = Sender(app, mailbox), Sender(app, mailbox)
    victim.personal()
    attacker.personal()
    for _ in range(5):
        attacker.verify("00000123")
    assert "Too many wrong attempts" in text_of(attacker.verify("00000123"))
    page = attacker.get("/send/verify").get_data(as_text=True)
    for _ in range(5):
        attacker.post("/send/verify/resend", data={"csrf_token": csrf_token(page)})
    assert "Too many attempts. Please try again after" in text_of(attacker.get("/send/verify"))

    # The victim's own code still has all its tries, and a new one still comes.
    wrong = "00000123" if mailbox.code_for(victim.person.email) != "00000123" else "00000124"
    assert "You have 4 more attempts." in text_of(victim.verify(wrong))
    page = victim.get("/send/verify").get_data(as_text=True)
    victim.post("/send/verify/resend", data={"csrf_token": csrf_token(page)})
    assert "A new code has been sent" in text_of(victim.get("/send/verify"))
    assert victim.verify(mailbox.code_for(victim.person.email)).location.endswith("/send/recipients")


def test_what_cannot_be_a_code_spends_no_try(sender: Sender) -> None:
    sender.personal()
    for typed in ("abc", "1234", "12345678901"):
        assert "The code from the email has 8 digits." in text_of(sender.verify(typed))
    real = sender.mailbox.code_for(sender.person.email)
    wrong = "00000000" if real != "00000000" else "11111111"
    assert "You have 4 more attempts." in text_of(sender.verify(wrong))


ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")


def test_a_code_typed_in_arabic_indic_digits_is_the_code(sender: Sender) -> None:
    """A keyboard set to Arabic types ٣ for 3: the same code, not a wrong one."""
    sender.personal()
    code = sender.mailbox.code_for(sender.person.email)
    verified = sender.verify(code[:4].translate(ARABIC_INDIC) + " " + code[4:])
    assert verified.status_code == 302, text_of(verified)

"""A recipient's second factor: after the password (or link), a one-time
code to the recipient's own address or phone; only then a download grant."""

from __future__ import annotations

import re

from sqlalchemy import select

from app import db
from app.models import Event

from .walker import PASSWORD, Recipient, Sender, csrf_token, text_of

EMAIL = {"transfer": {"recipient_verification": "email"}}
ANNA = "anna@gemeente.example"


def _code_page(recipient: Recipient) -> str:
    return text_of(recipient.get("/download/code"))


def test_email_code_then_download(make_app, mailbox) -> None:
    app = make_app(EMAIL)
    sent = Sender(app, mailbox).send()
    assert "one-time code" in sent.notifications[ANNA].text
    mailbox.clear()
    recipient = Recipient(app)
    r = recipient.unlock(sent.access_id(ANNA), PASSWORD)
    assert r.status_code == 302 and r.location.endswith("/download/code")
    # Not open yet: the transfer page sends the browser back.
    assert recipient.get("/download/transfer").status_code == 302
    assert "A one-time code was sent to a•••@gemeente.example" in _code_page(recipient)
    code = mailbox.code_for(ANNA)
    assert len(code) == 6
    r = recipient.submit("/download/code", {"code": code})
    assert r.status_code == 302 and r.location.endswith("/download/transfer"), text_of(r)
    links = recipient.file_links()
    assert recipient.get(links["verslag.pdf"]).get_data() == b"%PDF-1.4 test report\n"


def _events(app, kind: str) -> list[Event]:
    with db.new_session(app) as s:
        return list(s.scalars(select(Event).where(Event.kind == kind)))


def _age_codes(app, minutes: int) -> None:
    """The codes sent this many minutes earlier: the tests' clock is the database's."""
    from datetime import timedelta

    from app.models import CodeChallenge

    with db.new_session(app) as s:
        for challenge in s.scalars(select(CodeChallenge).where(CodeChallenge.code_sent_at.is_not(None))):
            challenge.code_sent_at -= timedelta(minutes=minutes)
            challenge.code_expires_at -= timedelta(minutes=minutes)
        s.commit()


def _at_the_code_step(make_app, mailbox):  # type: ignore[no-untyped-def]
    """A transfer to Anna that asks for a mailed code, opened with the
    password in one browser: the app, that browser, and the code."""
    app = make_app(EMAIL)
    sent = Sender(app, mailbox).send()
    recipient = Recipient(app)
    assert recipient.unlock(sent.access_id(ANNA), PASSWORD).location.endswith("/download/code")
    return app, recipient, mailbox.code_for(ANNA)


def _wrong(code: str) -> str:
    return "000000" if code != "000000" else "111111"


def test_a_shared_password_opens_only_with_the_code_of_the_id_used(make_app, mailbox) -> None:
    """Piet has the password (it was shared) and Anna's ID (a forwarded mail),
    but not Anna's mailbox: the code goes to Anna, and Piet cannot open."""
    app = make_app(EMAIL)
    sent = Sender(app, mailbox).send(to=f"{ANNA}, piet@gemeente.example")
    mailbox.clear()
    piet = Recipient(app)
    assert piet.unlock(sent.access_id(ANNA), PASSWORD).location.endswith("/download/code")
    assert mailbox.to("piet@gemeente.example") == [] and len(mailbox.to(ANNA)) == 1
    code = mailbox.code_for(ANNA)
    for _ in range(5):
        piet.submit("/download/code", {"code": _wrong(code)})
    assert piet.get("/download/transfer").status_code == 302
    # Piet's own ID sends a code to Piet.
    piet2 = Recipient(app)
    piet2.unlock(sent.access_id("piet@gemeente.example"), PASSWORD)
    assert piet2.submit("/download/code", {"code": mailbox.code_for("piet@gemeente.example")}).location.endswith(
        "/download/transfer"
    )


def test_a_code_works_only_in_the_browser_that_asked(make_app, mailbox) -> None:
    app = make_app(EMAIL)
    sent = Sender(app, mailbox).send()
    mailbox.clear()
    mine, other = Recipient(app), Recipient(app)
    mine.unlock(sent.access_id(ANNA), PASSWORD)
    code = mailbox.code_for(ANNA)
    other.unlock(sent.access_id(ANNA), PASSWORD)
    assert len(mailbox.to(ANNA)) == 2  # a second code went out, for the other browser
    r = other.submit("/download/code", {"code": code})
    assert r.status_code == 422 and "This code is not correct" in text_of(r)
    # Said at the field, which is marked invalid (for a screen reader), and linked from the summary.
    page = r.get_data(as_text=True)
    assert 'aria-invalid="true"' in page and 'id="code-error"' in page and 'href="#code"' in page


def test_the_code_step_comes_only_after_a_right_password(make_app, mailbox) -> None:
    """No oracle: a wrong password and an unknown ID get the same answer, and no code is sent."""
    from app.ids import group, new_access_id

    app = make_app(EMAIL)
    sent = Sender(app, mailbox).send()
    mailbox.clear()
    wrong = Recipient(app).unlock(sent.access_id(ANNA), "not the password")
    unknown = Recipient(app).unlock(group(new_access_id()), "not the password")
    assert wrong.status_code == unknown.status_code == 403
    strip = lambda page: re.sub(r"[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}|value=\"[^\"]*\"", "", page)  # noqa: E731
    assert strip(text_of(wrong)) == strip(text_of(unknown))
    assert mailbox.to(ANNA) == []
    assert Recipient(app).get("/download/code").status_code == 302


def test_wrong_codes_lock_and_then_a_new_code_is_needed(make_app, mailbox) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    from app.clock import utcnow
    from app.models import AccessThrottle

    app, recipient, code = _at_the_code_step(make_app, mailbox)
    for left in (4, 3, 2):
        assert f"You have {left} more attempts." in text_of(recipient.submit("/download/code", {"code": _wrong(code)}))
    assert "You have 1 more attempt." in text_of(recipient.submit("/download/code", {"code": _wrong(code)}))
    assert "Too many wrong codes" in text_of(recipient.submit("/download/code", {"code": _wrong(code)}))
    # Locked: even the right code is refused, unjudged, and no new code goes out.
    locked_page = text_of(recipient.get("/download/code"))
    assert 'name="code"' not in locked_page and "Too many wrong codes" in locked_page and "Send the code again" not in locked_page
    token = csrf_token(recipient.get("/download/").get_data(as_text=True))
    r = recipient.post("/download/code", data={"csrf_token": token, "code": code})
    assert r.status_code == 429 and "Too many wrong codes" in text_of(r)
    assert len(_events(app, "recipient_code_failed")) == 5
    # The sender hears of it: someone has the password who does not have Anna's mailbox.
    notice = mailbox.last_to("jan@zorg.example")
    assert "Wrong codes for your transfer" in notice.message["Subject"] and "wrong one-time code 5 times" in notice.text
    # The lock is over: the old code is void; a new one opens.
    with db.new_session(app) as s:
        s.execute(update(AccessThrottle).values(locked_until=utcnow() - timedelta(seconds=1)))
        s.commit()
    r = recipient.submit("/download/code", {"code": code})
    assert "No valid code was sent for this transfer" in text_of(r)
    mailbox.clear()
    recipient.submit("/download/code/resend", page="/download/code")
    assert "Please wait" in _code_page(recipient)
    _age_codes(app, minutes=1)
    recipient.submit("/download/code/resend", page="/download/code")
    r = recipient.submit("/download/code", {"code": mailbox.code_for(ANNA)})
    assert r.location.endswith("/download/transfer"), text_of(r)


def test_a_code_expires(make_app, mailbox) -> None:
    app, recipient, code = _at_the_code_step(make_app, mailbox)
    _age_codes(app, minutes=15)
    r = recipient.submit("/download/code", {"code": code})
    assert r.status_code == 422 and "This code has expired" in text_of(r)


def test_codes_are_kept_as_hmacs_and_audited_without_them(make_app, mailbox, setup) -> None:
    from app.models import CodeChallenge

    app, recipient, code = _at_the_code_step(make_app, mailbox)
    with db.new_session(app) as s:
        [challenge] = s.scalars(select(CodeChallenge)).all()
        assert len(challenge.code_hash) == 32 and code.encode() not in challenge.code_hash
    for path in setup.files_at_rest(app.extensions["koerier"].instance_path):
        assert code.encode() not in path.read_bytes(), path
    recipient.submit("/download/code", {"code": _wrong(code)})
    recipient.submit("/download/code", {"code": code})
    kinds = ["recipient_code_sent", "recipient_code_failed", "recipient_code_passed", "download_unlocked"]
    for kind in kinds:
        [event] = _events(app, kind)
        assert event.actor == ANNA and code not in str(event.data)
    assert _events(app, "recipient_code_sent")[0].data == {"channel": "email"}


def test_codes_sent_to_one_recipient_are_bounded_per_day(make_app, mailbox) -> None:
    app = make_app({
        **EMAIL, "limits": {"recipient_codes_per_recipient_per_day": 2}, "recipient_codes": {"resend_cooldown_seconds": 0},
    })
    sent = Sender(app, mailbox).send()
    mailbox.clear()
    recipient = Recipient(app)
    recipient.unlock(sent.access_id(ANNA), PASSWORD)
    recipient.submit("/download/code/resend", page="/download/code")
    recipient.submit("/download/code/resend", page="/download/code")
    assert "Too many codes were sent for this transaction ID today" in _code_page(recipient)
    assert len(mailbox.to(ANNA)) == 2


def test_parallel_wrong_codes_get_no_more_tries_than_allowed(make_live, mailbox) -> None:
    """20 wrong codes at once, from four browsers that each passed the
    password, against gunicorn with 2 workers x 8 threads: at most
    max_attempts are judged, and then even the right code is refused."""
    import requests

    from .test_counters_race import RACE, burst

    config = {**EMAIL, **RACE, "limits": {"recipient_codes_per_recipient_per_day": 100}}
    app, server = make_live(config, workers=2, threads=8)
    sent = Sender(app, mailbox).send()
    mailbox.clear()
    browsers = []
    for _ in range(4):
        browser = Recipient(app)
        assert browser.unlock(sent.access_id(ANNA), PASSWORD).location.endswith("/download/code")
        token = csrf_token(browser.get("/download/code").get_data(as_text=True))
        browsers.append((browser, token, mailbox.code_for(ANNA)))
    last_code = browsers[-1][2]
    wrong = "000000" if "000000" not in {code for _, _, code in browsers} else "999999"

    def post(i: int) -> str:
        browser, token, _ = browsers[i % 4]
        answer = requests.post(
            server.url + "/download/code", data={"csrf_token": token, "code": wrong},
            headers={"Cookie": browser.cookie_header(), "Accept-Language": "en"}, allow_redirects=False, timeout=120,
        )
        return f"HTTP {answer.status_code}"

    answers = burst(20, post)
    assert set(answers) == {"HTTP 303"}, answers
    assert 1 <= len(_events(app, "recipient_code_failed")) <= 5
    browser, token, _ = browsers[-1]
    r = browser.post("/download/code", data={"csrf_token": token, "code": last_code})
    assert r.status_code == 429 and "Too many wrong codes" in text_of(r)


def test_a_link_sent_without_a_password_asks_for_the_code_too(make_app, mailbox) -> None:
    app = make_app(EMAIL)
    sent = Sender(app, mailbox).send(password_mode="none", password=None, password_repeat=None)
    mailbox.clear()
    recipient = Recipient(app)
    assert recipient.open_link(sent.link(ANNA)).location.endswith("/download/code")
    assert recipient.get("/download/transfer").status_code == 302
    r = recipient.submit("/download/code", {"code": mailbox.code_for(ANNA)})
    assert r.location.endswith("/download/transfer"), text_of(r)


def test_several_recipients_get_the_strongest_check_and_a_choice_only_where_every_rule_allows() -> None:
    from app import policy
    from app.settings import load_settings

    settings = load_settings(None, {
        "sms": {"backend": "outbox"}, "transfer": {"recipient_verification_choice": True},
        "rules": [
            {"name": "care", "recipients": ["*@zorg.example"], "recipient_verification": "sms", "password_by_sms": True},
            {"name": "staff", "recipients": ["*@gemeente.example"], "recipient_verification": "email"},
            {"name": "fixed", "recipients": ["*@vast.example"], "recipient_verification_choice": False},
        ],
    })

    def limits(*to: str) -> policy.Limits:
        return policy.decide(settings, "jan@elders.example", list(to), "en").limits

    assert limits("x@elders.example").verifications(sms_gateway=False) == ("none", "email")
    assert limits("a@gemeente.example").verifications(sms_gateway=True) == ("email", "sms")
    both = limits("a@gemeente.example", "b@zorg.example")
    assert (both.recipient_verification, both.password_by_sms) == ("sms", True)
    assert limits("a@gemeente.example", "c@vast.example").verifications(sms_gateway=True) == ("email",)


def test_a_recipient_code_typed_in_arabic_indic_digits_is_the_code(make_app, mailbox) -> None:
    app = make_app(EMAIL)
    sent = Sender(app, mailbox).send()
    mailbox.clear()
    recipient = Recipient(app)
    recipient.unlock(sent.access_id(ANNA), PASSWORD)
    typed = mailbox.code_for(ANNA).translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
    passed = recipient.submit("/download/code", {"code": typed})
    assert passed.status_code == 302, text_of(passed)

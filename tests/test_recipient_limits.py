"""How many recipients a sender reaches, and what that costs the portal.

One notification post with thousands of recipients once took minutes of
CPU, gigabytes of memory and mail, and a session cookie beyond 64 KB; an
open policy made one verified address a relay for phishing mail.
"""

from __future__ import annotations

import re

from sqlalchemy import func, select

from app import db
from app.models import Transfer

from .walker import Sender, csrf_token, text_of


def addresses(count: int, domain: str = "ontvanger.example", prefix: str = "r") -> list[str]:
    return [f"{prefix}{n}@{domain}" for n in range(count)]


def at_recipients(app, mailbox) -> Sender:  # type: ignore[no-untyped-def]
    sender = Sender(app, mailbox)
    assert sender.personal().status_code == 302
    assert sender.verify().status_code == 302
    return sender


def at_notification(sender: Sender, to: str, cc: str = "", bcc: str = "") -> str:
    """A verified sender's draft (a new one after a finished transfer) at its
    last step; the notification page's CSRF token."""
    assert sender.personal().status_code == 302
    assert sender.recipients(to, cc, bcc).status_code == 302
    assert sender.files([("a.pdf", b"%PDF 1")]).status_code == 302
    assert sender.options().status_code == 302
    return csrf_token(sender.get("/send/notification").get_data(as_text=True))


def transfers(app) -> int:  # type: ignore[no-untyped-def]
    with app.app_context():
        return db.session().scalar(select(func.count()).select_from(Transfer))


def test_hundreds_of_recipients_are_refused_and_the_form_is_kept(app, mailbox) -> None:
    sender = at_recipients(app, mailbox)
    many = addresses(300)
    r = sender.recipients("\n".join(many[:100]), cc="\n".join(many[100:200]), bcc="\n".join(many[200:]))
    assert r.status_code == 422
    page = text_of(r)
    assert "A transfer can go to at most 50 recipients (To, Cc and Bcc together); you entered 300." in page
    assert many[0] in page and many[150] in page and many[299] in page


def test_bcc_counts_against_the_cap(app, mailbox) -> None:
    sender = at_recipients(app, mailbox)
    many = addresses(51)
    r = sender.recipients("\n".join(many[:49]), bcc="\n".join(many[49:]))
    assert r.status_code == 422 and "you entered 51" in text_of(r)
    assert sender.recipients("\n".join(many[:48]), bcc="\n".join(many[48:50])).status_code == 302


def test_a_rule_can_lower_the_cap_and_the_strictest_applies(make_app, mailbox) -> None:
    app = make_app({"rules": [{"name": "small", "recipients": ["*@klein.example"], "max_recipients": 2}]})
    sender = at_recipients(app, mailbox)
    r = sender.recipients("a@klein.example", cc="b@groot.example", bcc="c@groot.example")
    assert r.status_code == 422
    assert "at most 2 recipients (To, Cc and Bcc together); you entered 3." in text_of(r)
    # Without the rule's recipient the global cap applies.
    assert sender.recipients("a@groot.example", cc="b@groot.example", bcc="c@groot.example").status_code == 302


def test_the_cap_is_checked_again_when_the_transaction_starts(make_app, mailbox, tmp_path) -> None:
    instance = tmp_path / "shared"
    sender = at_recipients(make_app(instance=instance), mailbox)
    token = at_notification(sender, "a@x.example", cc="b@x.example", bcc="c@x.example")
    # The operator lowers the cap while the sender is on the last step.
    sender.restart_on(make_app({"transfer": {"max_recipients": 2}}, instance=instance))
    mailbox.clear()
    r = sender.post("/send/notification", data={"csrf_token": token, "subject": "Dossier", "body": "Tekst"})
    assert r.status_code == 302 and r.location.endswith("/send/recipients")
    assert transfers(sender.app) == 0 and mailbox.messages == []


def test_a_deny_rule_catches_a_bcc_recipient_on_the_recipients_step(make_app, mailbox) -> None:
    app = make_app({"rules": [{"name": "blocked", "recipients": ["x@evil.example"], "action": "deny", "reason": "Blocked."}]})
    sender = at_recipients(app, mailbox)
    r = sender.recipients("anna@gemeente.example", bcc="x@evil.example")
    assert r.status_code == 422 and "You cannot send to x@evil.example: Blocked." in text_of(r)


def test_a_deny_rule_catches_a_bcc_recipient_when_the_transaction_starts(make_app, mailbox, tmp_path) -> None:
    instance = tmp_path / "shared"
    sender = at_recipients(make_app(instance=instance), mailbox)
    token = at_notification(sender, "anna@gemeente.example", bcc="x@evil.example")
    blocked = {"rules": [{"name": "blocked", "recipients": ["x@evil.example"], "action": "deny", "reason": "Blocked."}]}
    sender.restart_on(make_app(blocked, instance=instance))
    mailbox.clear()
    r = sender.post("/send/notification", data={"csrf_token": token, "subject": "Dossier", "body": "Tekst"})
    assert r.status_code == 302 and r.location.endswith("/send/recipients")
    assert transfers(sender.app) == 0 and mailbox.messages == []


def test_the_daily_recipient_budget_holds_across_transfers(make_app, mailbox) -> None:
    app = make_app({"limits": {"recipients_per_sender_per_day": 5}})
    sender = Sender(app, mailbox)
    sender.send("a@x.example", cc="b@x.example", bcc="c@x.example")
    assert transfers(app) == 1

    token = at_notification(sender, "d@x.example", cc="e@x.example", bcc="f@x.example")
    mailbox.clear()
    r = sender.post("/send/notification", data={"csrf_token": token, "subject": "Mijn onderwerp", "body": "Mijn tekst"})
    assert r.status_code == 429
    page = text_of(r)
    assert "Your daily limit of recipients is reached: 2 of 5 left today, and this transfer has 3." in page
    assert "Mijn onderwerp" in page and "Mijn tekst" in page  # what was typed is kept
    assert transfers(app) == 1 and mailbox.messages == []

    # The refused start was not counted: two recipients still fit, and then none.
    assert sender.recipients("d@x.example", cc="e@x.example").status_code == 302
    assert sender.notification().status_code == 200
    assert transfers(app) == 2
    token = at_notification(sender, "g@x.example")
    r = sender.post("/send/notification", data={"csrf_token": token, "subject": "Nog een", "body": "Tekst"})
    assert r.status_code == 429 and "0 of 5 left today" in text_of(r)


def _session(app, response) -> tuple[str, dict]:  # type: ignore[no-untyped-def]
    raw = next(c for c in response.headers.getlist("Set-Cookie") if c.startswith("__Host-koerier="))
    value = raw.split(";", 1)[0].split("=", 1)[1]
    return value, app.session_interface.get_signing_serializer(app).loads(value)


def test_fifty_recipients_cost_no_more_mail_and_no_bigger_cookie_than_one(app, mailbox) -> None:
    sender = Sender(app, mailbox)
    one = sender.send("solo@x.example")
    solo_size = len(one.notifications["solo@x.example"].raw)

    to, cc, bcc = addresses(30, prefix="to"), addresses(10, prefix="cc"), addresses(10, prefix="bcc")
    sent = sender.send("\n".join(to), cc="\n".join(cc), bcc="\n".join(bcc))
    for address in to + cc + bcc:
        mail = mailbox.last_to(address)
        # Five co-recipients by name, the rest counted; never a Bcc address.
        assert len(mail.raw) < solo_size + 2_000, address
        assert "and 35 other recipients" in mail.text
        assert not any(b in mail.text or b in mail.html for b in bcc if b != address)
    confirmation = mailbox.last_to(sender.person.email)
    assert len(confirmation.raw) < 12_000 and "and 45 other recipients" in confirmation.text

    # The summary page lists everyone with their transaction ID; the cookie holds none of it.
    ids = _transaction_ids(text_of(sent.summary))
    assert sorted(ids) == sorted(to + cc + bcc)
    value, session = _session(app, sent.summary)
    assert len(value) < 600
    assert not any(a in str(session) for a in ids) and not any(i in str(session) for i in ids.values())
    # A reload rebuilds the summary from the database: the same IDs, sizes without names.
    reloaded = text_of(sender.get("/send/done"))
    assert _transaction_ids(reloaded) == ids
    assert "verslag.pdf" in text_of(sent.summary) and "verslag.pdf" not in reloaded


def _transaction_ids(page: str) -> dict[str, str]:
    return dict(re.findall(r"([^\s>]+@ontvanger\.example)\s*· Transaction ID <code[^>]*>([^<]+)</code>", page))

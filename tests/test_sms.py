"""Codes and passwords by SMS: the numbers on the recipients step, the
gateway's HTTP API (a loopback server that plays it), and its failures."""

from __future__ import annotations

import re
import sqlite3
import tomllib
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from app import db, purge
from app.models import Draft, Transfer
from app.settings import ConfigError, load_settings
from wizard.forms import mobile_field_name

from .sms_gateway import SmsGateway
from .walker import PASSWORD, Recipient, Sender, text_of

ANNA, PIET = "anna@gemeente.example", "piet@gemeente.example"
ROOT = Path(__file__).resolve().parent.parent


def sms_config(gateway: SmsGateway, **transfer: object) -> dict:
    return {"sms": gateway.config(), "transfer": {"recipient_verification": "sms", **transfer}}


def to_recipients(sender: Sender, numbers: dict[str, str], to: str | None = None):  # type: ignore[no-untyped-def]
    fields = {mobile_field_name(address): number for address, number in numbers.items()}
    return sender.submit("/send/recipients", {"to": to or ", ".join(numbers), "cc": "", "bcc": "", **fields})


def walk_to_files(sender: Sender) -> None:
    assert sender.personal().status_code == 302
    assert sender.verify().status_code == 302


def test_numbers_are_asked_checked_and_kept(make_app, mailbox, sms_gateway: SmsGateway) -> None:
    app = make_app(sms_config(sms_gateway))
    sender = Sender(app, mailbox)
    walk_to_files(sender)
    # First the addresses: the rows for their numbers appear, each required.
    r = sender.recipients(to=f"{ANNA}, {PIET}")
    page = text_of(r)
    assert r.status_code == 422 and f"Please enter a mobile number for {ANNA}." in page and PIET in page
    # A fixed line and something that is no number: said so, and everything typed comes back.
    r = to_recipients(sender, {ANNA: "0592 123456", PIET: "06 1234"})
    page = text_of(r)
    assert "“0592 123456” is a fixed line" in page and "“06 1234” is not a mobile number" in page
    assert 'value="0592 123456"' in page and 'value="06 1234"' in page and ANNA in page
    assert to_recipients(sender, {ANNA: "06 12345678", PIET: "+32 470 12 34 56"}).status_code == 302
    # Shown again as entered (normalised), for the sender only.
    page = text_of(sender.get("/send/recipients"))
    assert 'value="+31 6 12345678"' in page and 'value="+32 470 12 34 56"' in page


def test_sms_code_then_download(make_app, mailbox, sms_gateway: SmsGateway, setup) -> None:
    app = make_app(sms_config(sms_gateway))
    sender = Sender(app, mailbox)
    walk_to_files(sender)
    assert to_recipients(sender, {ANNA: "06 12345678"}).status_code == 302
    assert sender.files([("verslag.pdf", b"%PDF-1.4 test report\n")]).status_code == 302
    sent = sender.finish([ANNA])
    assert "one-time code, which is then sent to you by SMS" in sent.notifications[ANNA].text
    assert sms_gateway.requests == []
    recipient = Recipient(app)
    assert recipient.unlock(sent.access_id(ANNA), PASSWORD).location.endswith("/download/code")
    [request] = sms_gateway.requests
    # The provider's API as configured: its auth header, JSON with the number and the text.
    assert request.headers["Authorization"] == "AccessKey test-key"
    assert request.headers["Content-Type"] == "application/json"
    assert request.json()["originator"] == "Gemeente" and request.json()["recipients"] == ["31612345678"]
    assert "A one-time code was sent by SMS to •••• 78" in text_of(recipient.get("/download/code"))
    r = recipient.submit("/download/code", {"code": sms_gateway.code_for("31612345678")})
    assert r.location.endswith("/download/transfer"), text_of(r)
    assert recipient.get(recipient.file_links()["verslag.pdf"]).get_data() == b"%PDF-1.4 test report\n"
    # The number is nowhere in clear at rest.
    for path in setup.files_at_rest(app.extensions["koerier"].instance_path):
        data = path.read_bytes()
        assert b"31612345678" not in data and b"12345678" not in data, path


def test_a_gateway_that_fails_or_hangs_at_download_is_said_and_retried(make_app, mailbox, sms_gateway: SmsGateway) -> None:
    app = make_app({**sms_config(sms_gateway), "recipient_codes": {"resend_cooldown_seconds": 0}})
    sender = Sender(app, mailbox)
    walk_to_files(sender)
    to_recipients(sender, {ANNA: "06 12345678"})
    sender.files([("verslag.pdf", b"%PDF")])
    sent = sender.finish([ANNA])
    recipient = Recipient(app)
    sms_gateway.failing = True
    recipient.unlock(sent.access_id(ANNA), PASSWORD)
    assert "We could not send the code. Please try again later." in text_of(recipient.get("/download/code"))
    sms_gateway.failing, sms_gateway.hanging = False, 3  # beyond the 2 s timeout
    recipient.submit("/download/code/resend", page="/download/code")
    assert "We could not send the code" in text_of(recipient.get("/download/code"))
    sms_gateway.hanging = 0
    # Nothing of the failed tries counted: no cooldown, no code to type.
    recipient.submit("/download/code/resend", page="/download/code")
    r = recipient.submit("/download/code", {"code": sms_gateway.code_for("31612345678")})
    assert r.location.endswith("/download/transfer"), text_of(r)


def to_last_step(sender: Sender, numbers: dict[str, str], to: str | None = None) -> None:
    """A sender walked to the notification step, with numbers for the recipients and a generated password."""
    walk_to_files(sender)
    to_recipients(sender, numbers, to)
    sender.files([("verslag.pdf", b"%PDF-1.4 test report\n")])
    assert sender.options(password_mode="generate", password=None, password_repeat=None).status_code == 302


def password_by_sms(gateway: SmsGateway) -> dict:
    return sms_config(gateway, password_by_sms=True)


def test_the_generated_password_goes_by_sms_never_by_mail(make_app, mailbox, sms_gateway: SmsGateway) -> None:
    app = make_app(password_by_sms(sms_gateway))
    sender = Sender(app, mailbox)
    walk_to_files(sender)
    to_recipients(sender, {ANNA: "06 12345678", PIET: "06 87654321"}, to=f"{ANNA}, {PIET}")
    sender.files([("verslag.pdf", b"%PDF-1.4 test report\n")])
    # The options step does not promise the sender a password to pass on.
    options = text_of(sender.get("/send/options"))
    assert "the password goes to each recipient by SMS when you start the transaction" in options
    assert "you will see the password once" not in options
    sent = sender.finish([ANNA, PIET], password_mode="generate", password=None, password_repeat=None)
    assert 'id="generated-password"' not in sent.summary.get_data(as_text=True)
    assert "The generated password was sent to each recipient by SMS." in text_of(sent.summary)
    [anna_text] = sms_gateway.texts_to("31612345678")
    [piet_text] = sms_gateway.texts_to("31687654321")
    password = anna_text.split(" is ", 1)[1].split(". The transaction ID", 1)[0]
    assert password in piet_text
    for address in (ANNA, PIET):
        mail = sent.notifications[address]
        assert "Password: you receive it by SMS" in mail.text and password not in mail.text and password not in mail.html
    recipient = Recipient(app)
    assert recipient.unlock(sent.access_id(ANNA), password).location.endswith("/download/code")
    r = recipient.submit("/download/code", {"code": sms_gateway.code_for("31612345678")})
    assert r.location.endswith("/download/transfer"), text_of(r)
    # My transfers (open for the address the wizard verified) says how the recipients open it.
    with db.new_session(app) as s:
        mine = text_of(sender.get(f"/mine/{s.scalar(select(Transfer.id))}"))
    assert "The generated password was sent to each recipient by SMS." in mine
    assert "A one-time code by SMS to the recipient's mobile number" in mine


def test_nothing_tells_the_sender_to_pass_on_a_password_that_went_by_sms(
    make_app, mailbox, sms_gateway: SmsGateway
) -> None:
    """The sender never saw it: options step, confirmation, My transfers,
    report, lockout mail and the recipient's reminder say it went by SMS."""
    app = make_app({**password_by_sms(sms_gateway), "retention": {"reminder_days_before": 2}})
    sender = Sender(app, mailbox)
    walk_to_files(sender)
    to_recipients(sender, {ANNA: "06 12345678"})
    sender.files([("verslag.pdf", b"%PDF-1.4 test report\n")])
    options = text_of(sender.get("/send/options"))
    assert "the password goes to each recipient by SMS when you start the transaction" in options
    assert "you will see the password once" not in options
    sent = sender.finish([ANNA], password_mode="generate", password=None, password_repeat=None)
    told = [mailbox.last_to(sender.person.email)]
    with db.new_session(app) as s:
        id_ = s.scalar(select(Transfer.id))
    mine = text_of(sender.get(f"/mine/{id_}"))
    assert "The password went to each recipient by SMS when the transfer was started" in mine
    report = text_of(sender.get(f"/mine/{id_}/report"))
    assert "The generated password was sent to each recipient by SMS." in report
    for _ in range(5):  # download.max_attempts
        Recipient(app).unlock(sent.access_id(ANNA), "Verkeerd-Wachtwoord-1")
    lockout = mailbox.last_to(sender.person.email)
    assert "The password went to the recipient by SMS and cannot be sent again" in lockout.text
    told.append(lockout)
    for page in (options, mine, report):
        assert "by phone" not in page
    for mail in told:
        assert "by phone" not in mail.text and "by phone" not in mail.html
    assert "The generated password was sent to each recipient by SMS." in told[0].text
    with app.app_context():
        expires = db.session().scalar(select(Transfer.expires_at))
        assert purge.run(lambda: db.new_session(app), app.extensions["koerier"], expires - timedelta(days=1)).reminders_sent
    reminder = mailbox.last_to(ANNA)
    assert "Password: you receive it by SMS" in reminder.text and "contact the sender" not in reminder.text
    assert "Password: you receive it by SMS" in reminder.html and "contact the sender" not in reminder.html


def test_no_transfer_starts_when_the_password_sms_cannot_go(make_app, mailbox, sms_gateway: SmsGateway) -> None:
    app = make_app(password_by_sms(sms_gateway))
    sender = Sender(app, mailbox)
    to_last_step(sender, {ANNA: "06 12345678"})
    mailbox.clear()
    sms_gateway.failing = True
    r = sender.notification(subject="Dossier 42")
    page = text_of(r)
    assert r.status_code == 503 and "could not be sent to the recipients by SMS" in page and 'value="Dossier 42"' in page
    with db.new_session(app) as s:
        assert s.scalar(select(func.count()).select_from(Transfer)) == 0
        assert s.scalar(select(func.count()).select_from(Draft)) == 1
    assert mailbox.to(ANNA) == []
    # The gateway is back: the same draft starts, and its password goes out once.
    sms_gateway.failing = False
    sms_gateway.requests.clear()
    summary = sender.notification(subject="Dossier 42")
    assert summary.status_code == 200, text_of(summary)
    assert len(sms_gateway.texts_to("31612345678")) == 1 and mailbox.last_to(ANNA)


def another_request_writes(database: str) -> str:
    """As a request in another worker would: it waits for the write lock up to a busy wait."""
    other = sqlite3.connect(database, timeout=5, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
        return "written"
    except sqlite3.OperationalError as exc:
        return str(exc)
    finally:
        other.close()


@pytest.mark.setup("embedded")
def test_the_password_sms_goes_out_while_the_database_takes_writes(make_app, mailbox, sms_gateway: SmsGateway) -> None:
    """SQLite has one writer at a time. Sent while "Start transaction" held
    the write lock, the password SMS made every other request that writes
    wait on the gateway (up to its timeout, 30 s), longer than their busy
    wait (10 s): they failed with "database is locked"."""
    app = make_app({**password_by_sms(sms_gateway), "sms": sms_gateway.config(timeout_seconds=30)})
    database = app.extensions["koerier.engine"].url.database
    sender = Sender(app, mailbox)
    to_last_step(sender, {ANNA: "06 12345678"})
    writes: list[str] = []
    sms_gateway.while_sending = lambda: writes.append(another_request_writes(database))
    summary = sender.notification()
    assert summary.status_code == 200, text_of(summary)
    assert writes == ["written"]


def test_a_retry_after_the_gateway_failed_sends_the_same_password(
    make_app, mailbox, sms_gateway: SmsGateway, setup
) -> None:
    """The password is made once per draft, kept sealed in it before it goes
    out: a second try (or a second click) sends no other password than the
    one some recipients may already hold."""
    app = make_app(password_by_sms(sms_gateway))
    sender = Sender(app, mailbox)
    to_last_step(sender, {ANNA: "06 12345678", PIET: "06 87654321"}, to=f"{ANNA}, {PIET}")
    mailbox.clear()
    sms_gateway.failing_for = {"31687654321"}
    r = sender.notification()
    assert r.status_code == 503 and "could not be sent to the recipients by SMS" in text_of(r)
    [first] = sms_gateway.texts_to("31612345678")
    password = first.split(" is ", 1)[1].split(". The transaction ID", 1)[0]
    with db.new_session(app) as s:
        assert s.scalar(select(func.count()).select_from(Transfer)) == 0
    assert mailbox.to(ANNA) == [] and mailbox.to(PIET) == []
    # Kept for the next try, never in clear.
    for path in setup.files_at_rest(app.extensions["koerier"].instance_path):
        assert password.encode() not in path.read_bytes(), path
    sms_gateway.failing_for = set()
    sent = sender.finish([ANNA, PIET], password_mode="generate", password=None, password_repeat=None)
    assert sms_gateway.texts_to("31612345678") == [first, first]
    assert sms_gateway.texts_to("31687654321")[-1] == first
    recipient = Recipient(app)
    assert recipient.unlock(sent.access_id(PIET), password).location.endswith("/download/code")


@pytest.mark.parametrize(
    ("config", "names"),
    [
        ({"transfer": {"recipient_verification": "sms"}}, "transfer.recipient_verification: SMS needs a gateway"),
        ({"rules": [{"name": "x", "recipient_verification": "sms"}]}, "rules[0].recipient_verification: SMS needs a gateway"),
        ({"rules": [{"name": "x", "recipient_verification": "fax"}]}, "rules[0].recipient_verification"),
        ({"sms": {"backend": "outbox"}, "transfer": {"password_by_sms": True}}, "transfer.password_by_sms: needs recipient_verification"),
        (
            {"sms": {"backend": "outbox"}, "rules": [{
                "name": "x", "recipient_verification": "sms", "password_by_sms": True, "password_modes": ["manual"],
            }]},
            "rules[0].password_by_sms: only a generated password",
        ),
        ({"sms": {"backend": "http"}}, "sms.url"),
        ({"sms": {"backend": "http", "url": "https://sms.example", "body": {"to": "{number}"}}}, "sms.body: must contain"),
        ({"sms": {"backend": "http", "url": "https://sms.example", "body": {"t": "{txt}"}}}, "sms.body.t: unknown placeholder"),
        ({"sms": {"auth_header": "Authorization"}}, "sms.auth_value"),
        ({"recipient_codes": {"code_length": 9}}, "recipient_codes.code_length"),
    ],
)
def test_bad_sms_and_verification_settings_name_the_key(config: dict, names: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(names)):
        load_settings(None, config)


def test_the_readme_examples_for_dutch_providers_are_valid() -> None:
    readme = (ROOT / "README.md").read_text()
    examples = re.findall(r"```toml\n(\[sms\].*?)```", readme, re.S)
    assert len(examples) == 3
    for example in examples:
        assert load_settings(None, tomllib.loads(example)).sms.backend == "http"


def test_policy_check_shows_the_recipients_verification(tmp_path: Path) -> None:
    from .test_policy import _flask

    instance = tmp_path / "inst"
    instance.mkdir()
    config = (
        "[sms]\nbackend = 'outbox'\n[[rules]]\nname = 'care'\nrecipients = ['*@zorg.example']\n"
        "recipient_verification = 'sms'\npassword_by_sms = true\n"
    )
    checked = _flask("policy", "check", config=config, instance=instance)
    assert checked.returncode == 0, checked.stderr
    assert "recipient code: sms; generated password by SMS" in checked.stdout
    broken = _flask("policy", "check", config="[[rules]]\nname = 'care'\nrecipient_verification = 'sms'\n", instance=instance)
    assert broken.returncode != 0 and "rules[0].recipient_verification: SMS needs a gateway" in broken.stderr


def test_a_form_body_and_the_outbox(make_app, mailbox, sms_gateway: SmsGateway) -> None:
    """A form-encoded API gets its fields; the outbox writes .sms files beside the mails."""
    from app.sms import TextMessage, make_gateway

    form = load_settings(None, {"sms": sms_gateway.config(body_format="form", body={"to": "{number}", "message": "{text}"})})
    make_gateway(form, Path("/nonexistent")).send(TextMessage("+31612345678", "Uw code is 123456 {number}"))
    [request] = sms_gateway.requests
    assert request.form() == {"to": ["+31612345678"], "message": ["Uw code is 123456 {number}"]}
    app = make_app({"sms": {"backend": "outbox"}, "transfer": {"recipient_verification": "sms"}})
    portal = app.extensions["koerier"]
    portal.sms.send(TextMessage("+31612345678", "Uw code is 123456"))
    [written] = (portal.instance_path / "outbox").glob("*.sms")
    assert written.read_text() == "To: +31612345678\n\nUw code is 123456\n" and written.stat().st_mode & 0o077 == 0


def test_the_sender_may_choose_a_stronger_check_where_the_rules_allow(
    make_app, mailbox, sms_gateway: SmsGateway, tmp_path: Path
) -> None:
    app = make_app({"sms": sms_gateway.config(), "transfer": {"recipient_verification_choice": True}})
    sender = Sender(app, mailbox)
    walk_to_files(sender)
    # Numbers are offered, not required: none typed is fine.
    page = text_of(sender.get("/send/recipients"))
    r = sender.recipients(to=ANNA)
    assert r.status_code == 302, text_of(r)
    assert "Only needed if you choose a one-time code by SMS" in text_of(sender.get("/send/recipients"))
    sender.files([("verslag.pdf", b"%PDF")])
    options = text_of(sender.get("/send/options"))
    assert all(f'value="{v}"' in options for v in ("none", "email", "sms"))
    # SMS without a number is refused, saying where to enter it.
    r = sender.options(recipient_verification="sms")
    missing = f"enter a mobile number for each recipient on the Recipients step (missing for {ANNA})"
    assert r.status_code == 422 and missing in text_of(r)
    # Back there, the step no longer calls the numbers needed only if SMS is chosen: it was.
    assert sender.options(recipient_verification="sms", action="back").status_code == 302
    page = text_of(sender.get("/send/recipients"))
    assert "Enter each recipient's mobile number." in page and "Only needed if" not in page
    sent = sender.finish([ANNA], recipient_verification="email")
    assert "sent to this email address" in sent.notifications[ANNA].text
    assert page  # the recipients page rendered before any address was entered
    # Without a choice, what is posted does not count: the rule's minimum is taken.
    strict = make_app({"transfer": {"recipient_verification": "email"}}, instance=tmp_path / "strict")
    other = Sender(strict, mailbox)
    walk_to_files(other)
    other.recipients(to=ANNA)
    other.files([("verslag.pdf", b"%PDF")])
    assert other.options(recipient_verification="none").status_code == 302
    with db.new_session(strict) as s:
        assert s.scalar(select(Draft.recipient_verification)) == "email"


def test_retries_after_a_partial_gateway_failure_spend_the_recipient_budget(
    make_app, mailbox, sms_gateway: SmsGateway
) -> None:
    """Attack: a sender gives Anna's number to a victim's phone and Piet a
    number the provider refuses (a country the account does not serve).
    Each click on "Start transaction" then texts the victim again, and
    nothing was counted, since no transfer started: the portal sent as many
    SMS (with the sender's chosen name in them) as there were clicks."""
    app = make_app({**password_by_sms(sms_gateway), "limits": {"recipients_per_sender_per_day": 6}})
    sender = Sender(app, mailbox)
    to_last_step(sender, {ANNA: "06 12345678", PIET: "06 87654321"}, to=f"{ANNA}, {PIET}")
    sms_gateway.failing_for = {"31687654321"}
    answers = [sender.notification().status_code for _ in range(10)]
    # Texts sent again are texts like any others: they spend the day's recipient budget.
    assert len(sms_gateway.texts_to("31612345678")) <= 4, answers
    assert answers[-1] == 429


@pytest.mark.setup("embedded")
def test_the_code_sms_goes_out_while_the_database_takes_writes(make_app, mailbox, sms_gateway: SmsGateway) -> None:
    """As for the password SMS: the recipient's code went out while the
    unlock (and a resend) held SQLite's write lock, so every other request
    that writes waited on the gateway, up to its timeout (30 s), longer
    than its busy wait (10 s), and failed with "database is locked"."""
    app = make_app({
        **sms_config(sms_gateway), "sms": sms_gateway.config(timeout_seconds=30),
        "recipient_codes": {"resend_cooldown_seconds": 0},
    })
    database = app.extensions["koerier.engine"].url.database
    sender = Sender(app, mailbox)
    walk_to_files(sender)
    to_recipients(sender, {ANNA: "06 12345678"})
    sender.files([("verslag.pdf", b"%PDF-1.4 test report\n")])
    sent = sender.finish([ANNA])
    writes: list[str] = []
    sms_gateway.while_sending = lambda: writes.append(another_request_writes(database))
    recipient = Recipient(app)
    assert recipient.unlock(sent.access_id(ANNA), PASSWORD).location.endswith("/download/code")
    recipient.submit("/download/code/resend", page="/download/code")
    assert writes == ["written", "written"]
    # Both codes went out and were kept: the last one opens.
    sms_gateway.while_sending = None
    r = recipient.submit("/download/code", {"code": sms_gateway.code_for("31612345678")})
    assert r.location.endswith("/download/transfer"), text_of(r)


def test_a_gateway_that_redirects_has_not_taken_the_text(make_app, mailbox, sms_gateway: SmsGateway) -> None:
    """A provider that answers a redirect (it moved; an http:// URL of an
    https-only API) has sent nothing. The client followed it as a GET
    without the body, counted that GET's 200 as sent, and started the
    transfer with a password no recipient got; and it carried the API key
    in the auth header to wherever the redirect pointed."""
    elsewhere = SmsGateway().start()
    try:
        app = make_app(password_by_sms(sms_gateway))
        sender = Sender(app, mailbox)
        to_last_step(sender, {ANNA: "06 12345678"})
        sms_gateway.redirect_to = elsewhere.url
        r = sender.notification()
        assert r.status_code == 503 and "could not be sent to the recipients by SMS" in text_of(r)
        with db.new_session(app) as s:
            assert s.scalar(select(func.count()).select_from(Transfer)) == 0
        assert all("Authorization" not in request.headers for request in elsewhere.requests)
    finally:
        elsewhere.stop()


def test_one_password_sms_per_number_whatever_the_recipients(make_app, mailbox, sms_gateway: SmsGateway) -> None:
    """Attack: the numbers are the sender's to type, whoever the recipients
    are. Given one phone's number for every recipient (up to
    max_recipients, 50), one click on "Start transaction" texted that phone
    the same password once per recipient: an SMS flood at the operator's cost."""
    app = make_app(password_by_sms(sms_gateway))
    sender = Sender(app, mailbox)
    walk_to_files(sender)
    victim = "06 12345678"
    everyone = [ANNA, PIET, "kees@gemeente.example"]
    assert to_recipients(sender, dict.fromkeys(everyone, victim), to=", ".join(everyone)).status_code == 302
    sender.files([("verslag.pdf", b"%PDF-1.4 test report\n")])
    sent = sender.finish(everyone, password_mode="generate", password=None, password_repeat=None)
    assert len(sms_gateway.texts_to("31612345678")) == 1
    # And the one text opens for each of them.
    password = sms_gateway.texts_to("31612345678")[0].split(" is ", 1)[1].split(". The transaction ID", 1)[0]
    assert Recipient(app).unlock(sent.access_id(PIET), password).location.endswith("/download/code")

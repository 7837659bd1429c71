"""Upload requests: a staff member asks someone outside to send files; the
personal link opens the wizard with their address proven by the link and the
staff member as the one recipient, once, until revoked or expired."""

from __future__ import annotations

import re
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from flask import Flask
from sqlalchemy import select
from werkzeug.test import TestResponse

from app import db, purge
from app.clock import utcnow
from app.models import Draft, Event, Transfer, UploadRequest
from app.settings import ConfigError, load_settings

from .live import free_port
from .mailbox import Mailbox
from .test_my_transfers import Owner
from .test_portals import plain
from .walker import BASE, PASSWORD, Person, Recipient, Sender, csrf_token, multipart, text_of

STAFF = "anna@gemeente.example"
OTHER_STAFF = "bert@gemeente.example"
KARIN = Person(name="Karin Buiten", phone="06 12345678", email="karin@thuis.example")
OUTSIDER = "mallory@elders.example"
STAFF_CONFIG = {"staff": {"senders": ["*@gemeente.example"]}}
ASK = "Please send the signed contract before Friday."
CONTRACT = ("contract.pdf", b"%PDF-1.4 signed contract\n")
CLOSED = "This request is no longer open."


class Staff(Owner):
    """A staff member in My transfers, verified by the mailed code."""

    def __init__(self, app: Flask, mailbox: Mailbox, email: str = STAFF, language: str = "en") -> None:
        super().__init__(app, mailbox, email)
        self.get(f"/lang/{language}?next=/mine/")
        self.verify()

    def ask(self, **fields: Any) -> TestResponse:
        """"Request files", filled in as a person does, ``fields`` on top."""
        page = text_of(self.get("/mine/requests/new"))
        expires = re.search(r'<input[^>]*name="expires_on"[^>]*value="([^"]*)"', page)
        data = {"name": KARIN.name, "email": KARIN.email, "message": ASK, "language": "en",
                "expires_on": expires.group(1) if expires else "", **fields}
        return self.post("/mine/requests/new", data={"csrf_token": csrf_token(page), **data})

    def link(self, **fields: Any) -> str:
        """A request made, and the personal link its mail brought."""
        self.mailbox.clear()
        made = self.ask(**fields)
        assert made.status_code == 302 and made.location.endswith("/mine/"), text_of(made)
        return request_link(self.mailbox)

    def revoke(self, request_id: str) -> TestResponse:
        return self.submit(f"/mine/requests/{request_id}/revoke", page="/mine/")


def request_link(mailbox: Mailbox, address: str = KARIN.email) -> str:
    match = re.search(r"https?://[^/\s]+(/send/request/\S+)", mailbox.last_to(address).text)
    assert match, "no personal link in the mail"
    return match.group(1)


class External(Sender):
    """The person asked, following the personal link."""

    def __init__(self, app: Flask, mailbox: Mailbox, link: str, via: str | None = None, person: Person = KARIN) -> None:
        super().__init__(app, mailbox, person, via)
        self.link = link

    def personal(self, **overrides: str) -> Any:
        return self.submit(self.link, {"name": self.person.name, "phone": self.person.phone, **overrides})

    def to_files(self, **overrides: str) -> None:
        """Name and phone: no code, no recipients step."""
        answer = self.personal(**overrides)
        assert answer.status_code == 302 and answer.location.endswith("/send/files"), text_of(answer)

    def to_last_step(self) -> str:
        self.to_files()
        assert self.files([CONTRACT]).status_code == 302
        assert self.options().status_code == 302
        return text_of(self.get("/send/notification"))

    def start(self, last_step: str) -> Any:
        return self.post("/send/notification", data={"csrf_token": csrf_token(last_step), "subject": "Contract",
                                                     "body": "Hierbij."})


def transfers(app: Flask) -> list[tuple[Transfer, list[tuple[str, str]]]]:
    """Each transfer, with its recipients (kind, address)."""
    with db.new_session(app) as session:
        return [(t, [(r.kind, r.email) for r in t.recipients]) for t in session.scalars(select(Transfer))]


def the_request(app: Flask) -> UploadRequest:
    with db.new_session(app) as session:
        return session.scalars(select(UploadRequest)).one()


def kinds(app: Flask) -> list[str]:
    with db.new_session(app) as session:
        return list(session.scalars(select(Event.kind).where(Event.kind.like("request_%")).order_by(Event.id)))


def drafts_count(app: Flask) -> int:
    with db.new_session(app) as session:
        return len(session.scalars(select(Draft)).all())


def test_staff_requests_the_external_sends_and_the_staff_member_downloads(make_app, mailbox: Mailbox) -> None:
    app = make_app(STAFF_CONFIG)
    staff = Staff(app, mailbox)
    assert "Request files" in text_of(staff.get("/"))  # beside "Send" on the start page
    link = staff.link(max_megabytes="5")
    mail = mailbox.last_to(KARIN.email)
    assert mail.message["Subject"] == f"{STAFF} asks you to send files"
    assert "Dear Karin Buiten," in mail.text and ASK in mail.text
    assert mailbox.to(OUTSIDER) == []

    karin = External(app, mailbox, link)
    first = karin.get(link)
    page = plain(first)
    assert f"Files requested by {STAFF}" in page and ASK in page and f"Your files and message go to {STAFF}." in page
    assert "Recipients" not in page
    assert re.search(rf'<input[^>]*name="email"[^>]*readonly[^>]*value="{KARIN.email}"', text_of(first))
    mailbox.clear()
    karin.to_files()
    assert mailbox.to(KARIN.email) == []  # no code: the link came to this address
    assert "The maximum transfer volume is 5.0 MB." in plain(karin.get("/send/files"))  # the 5 MB the staff member typed
    assert karin.files([CONTRACT], message="Getekend.").status_code == 302
    sent = karin.finish([STAFF])

    ((transfer, recipients),) = transfers(app)
    assert transfer.sender_email == KARIN.email and recipients == [("to", STAFF)]
    notice = sent.notifications[STAFF]
    assert "This transfer answers your request for files." in notice.text
    anna = Recipient(app)
    assert anna.unlock(sent.access_id(STAFF), PASSWORD).status_code == 302
    assert "Getekend." in text_of(anna.get("/download/transfer"))
    assert anna.get(anna.file_links()["contract.pdf"]).data == CONTRACT[1]

    assert the_request(app).transfer_id == transfer.id
    mine = text_of(staff.get("/mine/"))
    # The list is named for what it holds, not for the button that makes one.
    assert "<h2>Your requests for files</h2>" in mine and "Fulfilled" in mine
    assert kinds(app) == ["request_created", "request_used"]


def test_a_used_request_is_refused_the_second_time(make_app, mailbox: Mailbox) -> None:
    app = make_app(STAFF_CONFIG)
    link = Staff(app, mailbox).link()
    first, second = External(app, mailbox, link), External(app, mailbox, link)
    second.to_files()  # a second tab, started before the first one sent
    page = first.to_last_step()
    assert first.start(page).status_code == 200

    # The link again: the page says so, and no draft is started.
    again = External(app, mailbox, link)
    before = drafts_count(app)
    closed = again.get(link)
    assert closed.status_code == 410 and CLOSED in text_of(closed)
    token = csrf_token(text_of(closed))
    posted = again.post(link, data={"csrf_token": token, "name": KARIN.name, "phone": KARIN.phone})
    assert posted.status_code == 410 and drafts_count(app) == before
    # The tab begun before stops at its next step.
    stopped = second.files([CONTRACT])
    assert stopped.status_code == 410 and CLOSED in text_of(stopped)
    assert len(transfers(app)) == 1


def test_a_revoked_request_is_refused(make_app, mailbox: Mailbox) -> None:
    app = make_app(STAFF_CONFIG)
    staff = Staff(app, mailbox)
    link = staff.link()
    karin = External(app, mailbox, link)
    page = karin.to_last_step()
    request_id = the_request(app).id

    # Another staff member cannot revoke it; its owner can.
    assert Staff(app, mailbox, OTHER_STAFF).revoke(request_id).status_code == 404
    assert the_request(app).revoked_at is None
    assert staff.revoke(request_id).status_code == 302
    assert "Revoked" in plain(staff.get("/mine/"))

    mailbox.clear()
    refused = karin.start(page)
    assert refused.status_code == 410 and CLOSED in text_of(refused)
    assert transfers(app) == [] and mailbox.to(STAFF) == []
    closed = External(app, mailbox, link).get(link)
    assert closed.status_code == 410 and CLOSED in text_of(closed)
    assert kinds(app) == ["request_created", "request_revoked"]


def test_an_expired_request_is_refused_and_purged(make_app, mailbox: Mailbox) -> None:
    app = make_app(STAFF_CONFIG)
    staff = Staff(app, mailbox)
    link = staff.link()
    expires_at = the_request(app).expires_at
    karin = External(app, mailbox, link)
    karin.to_files()
    with db.new_session(app) as session:
        session.get(UploadRequest, the_request(app).id).expires_at = utcnow() - timedelta(seconds=1)
        session.commit()
    for answer in (karin.get("/send/files"), External(app, mailbox, link).get(link)):
        assert answer.status_code == 410 and CLOSED in text_of(answer)
    assert "Expired" in plain(staff.get("/mine/"))

    with app.app_context():
        report = purge.run(lambda: db.new_session(app), app.extensions["koerier"], now=expires_at + timedelta(days=1))
    assert report.requests_removed == 1
    with db.new_session(app) as session:
        assert session.scalars(select(UploadRequest)).all() == []
    assert kinds(app)[-1] == "request_expired"


def test_only_staff_can_request_files(make_app, mailbox: Mailbox) -> None:
    app = make_app(STAFF_CONFIG)
    outside = Owner(app, mailbox, "jan@zorg.example")
    assert outside.get("/mine/requests/new").location.endswith("/mine/verify")
    outside.verify()
    assert "Request files" not in text_of(outside.get("/mine/")) and "Request files" not in text_of(outside.get("/"))
    assert outside.get("/mine/requests/new").status_code == 403
    # A crafted post, with the token of a page of its own.
    token = csrf_token(text_of(outside.get("/mine/")))
    crafted = outside.post("/mine/requests/new", data={
        "csrf_token": token, "name": KARIN.name, "email": KARIN.email, "expires_on": utcnow().date().isoformat(),
        "language": "en",
    })
    assert crafted.status_code == 403
    assert mailbox.to(KARIN.email) == []
    with db.new_session(app) as session:
        assert session.scalars(select(UploadRequest)).all() == []
    # And with no staff configured, nobody is.
    assert Staff(make_app(), mailbox).get("/mine/requests/new").status_code == 403


def test_crafted_posts_cannot_add_recipients_or_change_the_sender(make_app, mailbox: Mailbox) -> None:
    app = make_app(STAFF_CONFIG)
    link = Staff(app, mailbox).link()
    karin = External(app, mailbox, link)
    extra = {"to": OUTSIDER, "cc": "cc@elders.example", "bcc": "bcc@elders.example"}
    karin.to_files(email=OUTSIDER, **extra)
    token = csrf_token(text_of(karin.get("/send/files")))
    for posted in (extra, {"to": OUTSIDER, "action": "back"}):
        assert karin.post("/send/recipients", data={"csrf_token": token, **posted}).location.endswith("/send/files")
    # The first step again, with another address: it is not taken.
    assert karin.post("/send/", data={"csrf_token": token, "name": "Mallory", "phone": "0592 123456",
                                      "email": OUTSIDER, **extra}).status_code == 302
    body, content_type = multipart([("csrf_token", token), ("files", CONTRACT), *extra.items(), ("action", "next")])
    assert karin.post("/send/files", data=body, content_type=content_type).status_code == 302
    with db.new_session(app) as session:
        draft = session.scalars(select(Draft)).one()
        assert draft.sender_email == KARIN.email
        assert (draft.to_addresses, draft.cc_addresses, draft.bcc_addresses) == ([STAFF], [], [])
    assert karin.options(**extra).status_code == 302
    mailbox.clear()
    assert karin.notification(**extra).status_code == 200

    ((transfer, recipients),) = transfers(app)
    assert transfer.sender_email == KARIN.email and recipients == [("to", STAFF)]
    assert all(mailbox.to(address) == [] for address in [*extra.values(), OUTSIDER])
    # The address is not remembered as verified in this browser: an ordinary transfer asks for a code.
    token = csrf_token(text_of(karin.get("/send/")))
    new = karin.post("/send/new", data={"csrf_token": token})
    assert new.location.endswith("/send/")
    assert Sender.personal(karin, email=KARIN.email).location.endswith("/send/verify")


def test_a_requests_limits_tighten_the_rules_and_never_loosen_them(make_app, mailbox: Mailbox) -> None:
    app = make_app({**STAFF_CONFIG, "rules": [
        {"name": "klein", "recipients": ["*@gemeente.example"], "max_total_bytes": 2000,
         "allowed_extensions": ["pdf", "jpg", "docx"]},
    ]})
    link = Staff(app, mailbox).link(max_megabytes="5", allowed_extensions=".PDF, odt")
    karin = External(app, mailbox, link)
    karin.to_files()
    page = plain(karin.get("/send/files"))
    # The rule's 2,000 bytes, not the request's 5 MB; pdf alone: odt the rule does not allow.
    assert "The maximum transfer volume is 2.0 kB." in page and "Allowed file types: pdf." in page
    refused = karin.files([("brief.docx", b"PK\x03\x04 docx")], action="upload")
    assert refused.status_code == 422 and "“brief.docx” is not allowed" in text_of(refused)
    refused = karin.files([("groot.pdf", b"%PDF" + b"x" * 2000)], action="upload")
    assert refused.status_code == 422 and "larger than 2.0 kB" in text_of(refused)


def test_a_request_form_refuses_what_it_cannot_take(make_app, mailbox: Mailbox) -> None:
    staff = Staff(make_app({**STAFF_CONFIG, "requests": {"max_days": 10}}), mailbox)
    mailbox.clear()
    too_late = (utcnow() + timedelta(days=12)).date().isoformat()
    for fields, said in (
        ({"email": "karin"}, "This is not a valid email address."),
        ({"name": ""}, "Please enter the name of the person you ask."),
        ({"email": ""}, "Please enter the email address of the person you ask."),
        ({"allowed_extensions": "pdf, *.exe"}, "Please give file types as extensions separated by commas"),
        ({"max_megabytes": "0"}, "Please enter a whole number of at least 1."),
        ({"expires_on": too_late}, "The expiration date can be at most"),
    ):
        refused = staff.ask(**fields)
        assert refused.status_code == 422 and said in text_of(refused), fields
        assert ASK in text_of(refused)  # what was typed is kept
    assert mailbox.to(KARIN.email) == []


def test_request_mails_spend_the_staff_members_daily_recipients(make_app, mailbox: Mailbox) -> None:
    """A request mails whomever staff type in: it counts as a transfer's recipient does."""
    staff = Staff(make_app({**STAFF_CONFIG, "limits": {"recipients_per_sender_per_day": 2}}), mailbox)
    for address in (KARIN.email, "kees@thuis.example"):
        assert staff.ask(email=address).status_code == 302
    mailbox.clear()
    refused = staff.ask(email="joop@thuis.example")
    assert refused.status_code == 429 and "Your daily limit of recipients is reached." in text_of(refused)
    assert mailbox.to("joop@thuis.example") == []


def test_until_expiry_a_request_takes_more_than_one_transfer(make_app, mailbox: Mailbox) -> None:
    app = make_app({**STAFF_CONFIG, "requests": {"reuse": "until_expiry"}})
    staff = Staff(app, mailbox)
    link = staff.link()
    for _ in range(2):
        karin = External(app, mailbox, link)
        karin.to_files()
        assert karin.files([CONTRACT]).status_code == 302
        karin.finish([STAFF])
    assert len(transfers(app)) == 2
    assert "Open" in plain(staff.get("/mine/"))


def test_one_link_started_twice_at_once_gives_one_transfer(make_live, mailbox: Mailbox) -> None:
    """Two browsers on the last step of one request press "Start transaction"
    at the same moment, against gunicorn: exactly one transfer starts."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    app, _ = make_live({**STAFF_CONFIG, "site": {"base_url": base}}, port=port, threads=4)
    link = Staff(app, mailbox).link()
    tabs = [External(app, mailbox, link, via=base) for _ in range(2)]
    pages = [tab.to_last_step() for tab in tabs]
    start = threading.Barrier(len(tabs))

    def press(i: int) -> int:
        start.wait()
        return tabs[i].start(pages[i]).status_code

    with ThreadPoolExecutor(len(tabs)) as pool:
        answers = Counter(pool.map(press, range(len(tabs))))
    assert answers[200] == 1, answers
    assert len(transfers(app)) == 1
    assert kinds(app).count("request_used") == 1


@pytest.mark.parametrize(("config", "names"), [
    ({"staff": {"senders": ["*"]}}, "staff.senders: '*' is not an address"),
    ({"staff": {"senders": ["gemeente.example"]}}, "staff.senders: 'gemeente.example'"),
    ({"requests": {"reuse": "twice"}}, "requests.reuse: 'twice' is not one of once, until_expiry"),
    ({"requests": {"max_days": 0}}, "requests.max_days: must be between 1 and 365"),
])
def test_config_errors_name_the_key(tmp_path: Path, config: dict[str, Any], names: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(tomli_w.dumps(config))
    with pytest.raises(ConfigError, match=re.escape(names)):
        load_settings(path)


def test_links_of_other_pages_are_not_requests(make_app, mailbox: Mailbox) -> None:
    app = make_app(STAFF_CONFIG)
    Staff(app, mailbox).link()
    for path in ("/send/request/x", "/send/request/" + "A" * 43, "/send/request/" + "A" * 200):
        answer = External(app, mailbox, path).get(path)
        assert answer.status_code == 410 and CLOSED in text_of(answer)
    assert drafts_count(app) == 0


def test_a_start_refused_by_a_daily_limit_leaves_the_request_open(make_app, mailbox: Mailbox) -> None:
    """Karin's one transfer a day went elsewhere: answering the request is
    refused for today, and the request stays open for tomorrow instead of
    being used up by a transfer that never started."""
    app = make_app({**STAFF_CONFIG, "limits": {"transactions_per_sender_per_day": 1}})
    staff = Staff(app, mailbox)
    link = staff.link()
    Sender(app, mailbox, KARIN).send()
    karin = External(app, mailbox, link)
    refused = karin.start(karin.to_last_step())
    assert refused.status_code == 429, text_of(refused)

    request = the_request(app)
    assert request.used_at is None and request.transfer_id is None
    assert kinds(app) == ["request_created"]
    assert "Open" in plain(staff.get("/mine/"))
    again = External(app, mailbox, link).get(link)
    assert again.status_code == 200


def test_the_start_pages_staff_check_keeps_my_transfers_closing_notice(make_app, mailbox: Mailbox) -> None:
    """Whether to offer "Request files" is asked on the start page; asking
    must not forget that My transfers closed, which its next visit says."""
    app = make_app({**STAFF_CONFIG, "verification": {"my_transfers_minutes": 5}})
    staff = Staff(app, mailbox)
    with staff.client.session_transaction(base_url=BASE) as session:
        held = session["my_transfers"]
        held["since"] -= 5 * 60 + 1
        session["my_transfers"] = held
    assert "Request files" not in text_of(staff.get("/"))
    assert staff.get("/mine/").location.endswith("/mine/verify")
    page = text_of(staff.get("/mine/verify"))
    assert "My transfers closes 5 minutes after the code was entered" in page and f'value="{STAFF}"' in page


@pytest.mark.setup("distributed")  # SQLite lets one transaction write at a time: the race cannot happen there
def test_a_revoke_racing_a_start_leaves_the_request_used_or_revoked_never_both(make_app, mailbox: Mailbox) -> None:
    """The staff member's Revoke reads the request open; a transfer answering
    it commits; then the revoke, in the same transaction, writes. The
    request was both used and revoked (listed "Revoked" though the files
    arrived)."""
    from app import upload_requests

    app = make_app(STAFF_CONFIG)
    Staff(app, mailbox).link()
    settings = app.config["KOERIER"]
    request_id = the_request(app).id
    with db.new_session(app) as revoking, db.new_session(app) as starting:
        # The revoke's read, in the transaction its write will be in (held, as the view holds it).
        seen = revoking.get(UploadRequest, request_id)
        assert upload_requests.state(settings, seen) == "open"
        assert upload_requests.consume(starting, settings, request_id, "transfer-id", KARIN.email)
        starting.commit()
        assert not upload_requests.revoke(revoking, settings, STAFF, request_id)
        revoking.commit()
    request = the_request(app)
    assert request.used_at is not None and request.revoked_at is None

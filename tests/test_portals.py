"""Upload portals (``[[portals]]``, ``/to/<slug>``): anyone sends to the
operator's fixed recipients, within the portal's limits, and nothing a sender
posts changes to whom."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from sqlalchemy import select

from app import db
from app.models import Draft, Event, Transfer
from app.settings import ConfigError, load_settings

from .mailbox import Mailbox
from .test_tus import TusSender
from .walker import PASSWORD, Recipient, Sender, csrf_token, multipart, text_of

DESK = "jeugdzorg@gemeente.example"
TEAM = "team.jeugd@gemeente.example"
YOUTH_CARE = {
    "slug": "jeugdzorg",
    "title": {"nl": "Stukken sturen aan Jeugdzorg", "en": "Send documents to Youth care"},
    "intro": {"nl": "Stuur hier uw stukken voor het gesprek.", "en": "Send your documents for the meeting here."},
    "recipients": ["Jeugdzorg@Gemeente.example", TEAM],
}
PORTALS = {"portals": [YOUTH_CARE]}
OUTSIDER = "mallory@elders.example"
REPORT = ("verslag.pdf", b"%PDF-1.4 verslag voor jeugdzorg\n")


def plain(response: Any) -> str:
    """The page's text without tags, its white space made single."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", text_of(response)))


class PortalSender(Sender):
    """A sender who came by a portal's link."""

    slug = "jeugdzorg"

    def personal(self, **overrides: str) -> Any:
        data = {"name": self.person.name, "phone": self.person.phone, "email": self.person.email, **overrides}
        return self.submit(f"/to/{self.slug}", data)

    def to_files(self) -> None:
        """Personal data and the code: the recipients step is passed by."""
        assert self.personal().location.endswith("/send/verify")
        verified = self.verify()
        assert verified.status_code == 302 and verified.location.endswith("/send/files"), text_of(verified)

    def to_last_step(self) -> str:
        """Through the files step and the options: the notification step's page, to start from later."""
        self.to_files()
        assert self.files([REPORT]).status_code == 302
        assert self.options().status_code == 302
        return self.get("/send/notification").get_data(as_text=True)

    def start(self, last_step: str) -> Any:
        """"Start transaction" on the page ``to_last_step`` gave."""
        return self.post("/send/notification", data={"csrf_token": csrf_token(last_step), "subject": "Stukken", "body": "Tekst"})


class PortalTus(TusSender, PortalSender):
    def ready(self) -> "PortalTus":
        self.to_files()
        self.token = self.upload_token()
        return self


def _started(app) -> int:  # type: ignore[no-untyped-def]
    with app.app_context():
        return len(db.session().scalars(select(Transfer)).all())


def _recipients(app) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    with app.app_context():
        transfer = db.session().scalars(select(Transfer)).one()
        return [(r.kind, r.email) for r in transfer.recipients]


def _created(app) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    with app.app_context():
        return db.session().scalars(select(Event).where(Event.kind == "transfer_created")).one().data


def test_a_transfer_through_a_portal_reaches_its_recipients_only(make_app, mailbox: Mailbox) -> None:
    app = make_app(PORTALS)
    sender = PortalSender(app, mailbox)
    page = plain(sender.get("/to/jeugdzorg"))
    assert "Send documents to Youth care" in page and "Send your documents for the meeting here." in page
    assert f"Your files and message go to {DESK}, {TEAM}." in page
    assert "Recipients" not in page  # no such step in this wizard

    sender.to_files()
    files_page = plain(sender.get("/send/files"))
    assert f"Your files and message go to {DESK}, {TEAM}." in files_page
    assert sender.files([REPORT], message="Voor het gesprek van dinsdag.").status_code == 302
    mailbox.clear()
    sent = sender.finish([DESK, TEAM])
    summary = plain(sent.summary)
    assert DESK in summary and TEAM in summary

    # Mail went to the portal's recipients, and to the sender their receipt; to no one else.
    assert sorted(address for m in mailbox.messages for address in m.rcpt_tos) == sorted([DESK, TEAM, sender.person.email])
    assert _recipients(app) == [("to", DESK), ("to", TEAM)]
    assert _created(app)["portal"] == "jeugdzorg"

    desk = Recipient(app)
    opened = desk.unlock(sent.access_id(DESK), PASSWORD)
    assert opened.status_code == 302, text_of(opened)
    assert "Voor het gesprek van dinsdag." in text_of(desk.get("/download/transfer"))
    assert desk.get(desk.file_links()["verslag.pdf"]).data == REPORT[1]


def test_an_ordinary_transfer_records_no_portal(sender: Sender, app) -> None:
    sender.send()
    assert _created(app)["portal"] is None


def test_crafted_posts_cannot_add_change_or_remove_a_portals_recipients(make_app, mailbox: Mailbox) -> None:
    """The recipients step of a portal's draft reads nothing posted to it,
    and no other step takes recipients: every step is sent To, Cc and Bcc
    fields on top of its own, and the transfer still goes to the portal's
    recipients alone."""
    app = make_app(PORTALS)
    sender = PortalSender(app, mailbox)
    extra = {"to": OUTSIDER, "cc": "cc@elders.example", "bcc": "bcc@elders.example"}
    sender.to_files()
    token = csrf_token(sender.get("/send/files").get_data(as_text=True))

    answers = [
        sender.post("/send/recipients", data={"csrf_token": token, **posted})
        for posted in (extra, {"to": OUTSIDER, "action": "back"}, {"to": "", "cc": "", "bcc": ""})
    ]
    with app.app_context():
        draft = db.session().scalars(select(Draft)).one()
        assert (draft.to_addresses, draft.cc_addresses, draft.bcc_addresses) == ([DESK, TEAM], [], [])
    # Passed by, whatever was posted.
    assert [(a.status_code, a.location.removeprefix("https://portal.example.nl")) for a in answers] == [(302, "/send/files")] * 3
    assert sender.post("/send/", data={"csrf_token": token, **extra, "name": "Jan de Vries", "phone": "0592 123456",
                                       "email": sender.person.email}).status_code == 302
    body, content_type = multipart([("csrf_token", token), ("files", REPORT), *extra.items(), ("action", "next")])
    assert sender.post("/send/files", data=body, content_type=content_type).status_code == 302
    with app.app_context():
        draft = db.session().scalars(select(Draft)).one()
        assert (draft.to_addresses, draft.cc_addresses, draft.bcc_addresses) == ([DESK, TEAM], [], [])
    assert sender.options(**extra).status_code == 302
    mailbox.clear()
    summary = sender.notification(**extra)
    assert summary.status_code == 200, text_of(summary)

    assert _recipients(app) == [("to", DESK), ("to", TEAM)]
    for address in extra.values():
        assert mailbox.to(address) == []
    assert mailbox.to(DESK) and mailbox.to(TEAM)


def test_the_recipients_come_from_the_configuration_when_the_transaction_starts(
    make_app, mailbox: Mailbox, tmp_path: Path
) -> None:
    """What the draft's row holds does not decide: a changed row, or the
    operator's new address for the department, ends with the configured one."""
    instance = tmp_path / "shared"
    sender = PortalSender(make_app(PORTALS, instance=instance), mailbox)
    page = sender.to_last_step()
    moved = make_app({"portals": [{**YOUTH_CARE, "recipients": ["jeugd@gemeente.example"]}]}, instance=instance)
    sender.restart_on(moved)
    with moved.app_context():
        draft = db.session().scalars(select(Draft)).one()
        draft.cc_addresses = [OUTSIDER]
        db.session().commit()
    mailbox.clear()
    summary = sender.start(page)
    assert summary.status_code == 200, text_of(summary)
    assert _recipients(moved) == [("to", "jeugd@gemeente.example")]
    assert mailbox.to(OUTSIDER) == [] and mailbox.to(DESK) == []


def test_a_portals_limits_tighten_the_rules_and_never_loosen_them(make_app, mailbox: Mailbox) -> None:
    app = make_app({
        "rules": [{"name": "jeugd", "recipients": ["*@gemeente.example"], "max_files": 5, "max_total_bytes": 2000}],
        "portals": [{**YOUTH_CARE, "max_files": 2, "max_total_bytes": 100_000, "allowed_extensions": ["pdf", "jpg"]}],
    })
    sender = PortalSender(app, mailbox)
    sender.to_files()
    page = plain(sender.get("/send/files"))
    # The rule's 2,000 bytes, not the portal's looser 100,000; the portal's types only.
    assert "The maximum transfer volume is 2.0 kB." in page and "Allowed file types: jpg, pdf." in page
    refused = sender.files([("brief.docx", b"PK\x03\x04 docx")], action="upload")
    assert refused.status_code == 422 and "“brief.docx” is not allowed" in text_of(refused)
    refused = sender.files([("groot.pdf", b"%PDF" + b"x" * 2000)], action="upload")
    assert refused.status_code == 422 and "larger than 2.0 kB" in text_of(refused)
    refused = sender.files([("a.pdf", b"%PDF a"), ("b.pdf", b"%PDF b"), ("c.pdf", b"%PDF c")], action="upload")
    assert refused.status_code == 422 and "“c.pdf” was not added: a transfer can hold at most 2 files." in text_of(refused)


def test_resumable_uploads_keep_to_a_portals_limits(make_app, mailbox: Mailbox) -> None:
    app = make_app({"portals": [{**YOUTH_CARE, "max_files": 1, "max_total_bytes": 1000, "allowed_extensions": ["pdf"]}]})
    tus = PortalTus(app, mailbox).ready()
    options = tus.client.options("/send/uploads", base_url="https://portal.example.nl", headers={"Tus-Resumable": "1.0.0"})
    assert options.headers["Tus-Max-Size"] == "1000"
    assert tus.create(10, name="scan.zip").status_code == 403
    assert tus.create(1001, name="scan.pdf").status_code == 413
    created = tus.create(4, name="scan.pdf")
    assert created.status_code == 201
    assert tus.patch(created.headers["Location"], 0, b"%PDF").status_code == 204
    assert tus.create(4, name="second.pdf").status_code == 403
    recipient = tus.open_uploaded(DESK)
    assert recipient.get(recipient.file_links()["scan.pdf"]).data == b"%PDF"
    assert _recipients(app) == [("to", DESK), ("to", TEAM)]


def test_an_unknown_portal_is_not_found(make_app, mailbox: Mailbox) -> None:
    sender = PortalSender(make_app(PORTALS), mailbox)
    for path in ("/to/jeugdzorg-oud", "/to/Jeugdzorg", "/to/"):
        missing = sender.get(path)
        assert missing.status_code == 404 and "This page does not exist." in text_of(missing)
    token = csrf_token(sender.get("/to/jeugdzorg").get_data(as_text=True))
    posted = sender.post("/to/jeugdzorg-oud", data={"csrf_token": token, "name": "Jan", "phone": "0592 123456",
                                                    "email": sender.person.email})
    assert posted.status_code == 404
    assert mailbox.to(sender.person.email) == []


def test_a_portal_speaks_the_visitors_language_or_the_sites(make_app, mailbox: Mailbox) -> None:
    sender = PortalSender(make_app(PORTALS), mailbox)
    # The header's language choice on the portal's page: the same page, in Dutch, with what was typed.
    switched = sender.submit("/to/jeugdzorg?lang=nl", {"name": "Jan de Vries"}, page="/to/jeugdzorg")
    assert switched.status_code == 200 and 'value="Jan de Vries"' in text_of(switched)
    dutch = plain(switched)
    assert "<h1>Stukken sturen aan Jeugdzorg</h1>" in text_of(switched)
    assert "Stukken sturen aan Jeugdzorg" in dutch and "Stuur hier uw stukken voor het gesprek." in dutch
    assert f"Uw bestanden en bericht gaan naar {DESK}, {TEAM}." in dutch
    sender.get("/lang/de")
    # No German text: the site's default language (Dutch), not English.
    assert '<h1 lang="nl" dir="ltr">Stukken sturen aan Jeugdzorg</h1>' in text_of(sender.get("/to/jeugdzorg"))


def _proposed_language(sender: Sender) -> str:
    """The recipient language the options step proposes."""
    page = sender.get("/send/options").get_data(as_text=True)
    select_ = re.search(r'<select[^>]*name="recipient_language".*?</select>', page, re.S).group(0)
    [chosen] = [option for option in re.findall(r"<option([^>]*)>", select_) if " selected" in option]
    return re.search(r'value="([a-z]+)"', chosen).group(1)


def test_a_portal_proposes_its_recipients_language(make_app, mailbox: Mailbox) -> None:
    """The operator's recipient_language, not the sender's interface language,
    is proposed for the mails to the portal's recipients; the sender may change it."""
    wmo = {**YOUTH_CARE, "slug": "wmo", "recipient_language": "nl"}
    app = make_app({"portals": [YOUTH_CARE, wmo]})
    sender = PortalSender(app, mailbox)
    sender.slug = "wmo"
    sender.get("/lang/de")
    sender.to_files()
    assert sender.files([REPORT]).status_code == 302
    assert _proposed_language(sender) == "nl"
    assert sender.options(recipient_language="nl").status_code == 302
    sender.start(sender.get("/send/notification").get_data(as_text=True))
    with app.app_context():
        assert db.session().scalars(select(Transfer.language)).one() == "nl"
    assert mailbox.last_to(DESK).message["Subject"] == "Stukken" and "Beschikbaar tot" in mailbox.last_to(DESK).text
    # A portal without one proposes the sender's language, as an ordinary transfer does.
    other = PortalSender(app, mailbox)
    other.get("/lang/de")
    other.to_files()
    assert other.files([REPORT]).status_code == 302
    assert _proposed_language(other) == "de"
    # The sender may change what is proposed.
    sender = PortalSender(app, mailbox)
    sender.slug = "wmo"
    sender.to_files()
    assert sender.files([REPORT]).status_code == 302
    assert sender.options(recipient_language="pl").status_code == 302
    assert _proposed_language(sender) == "pl"


def test_the_rules_refusing_a_sender_say_so_before_a_code_is_sent(make_app, mailbox: Mailbox) -> None:
    app = make_app({
        "rules": [{"name": "geblokkeerd", "senders": ["*@spam.example"], "action": "deny", "reason": "Geblokkeerd."}],
        **PORTALS,
    })
    sender = PortalSender(app, mailbox)
    refused = sender.personal(email="piet@spam.example")
    assert refused.status_code == 422
    assert f"You cannot send to {DESK}: Geblokkeerd." in text_of(refused)
    assert 'value="piet@spam.example"' in text_of(refused)  # kept, to be corrected
    assert mailbox.to("piet@spam.example") == []
    with app.app_context():
        event = db.session().scalars(select(Event).where(Event.kind == "policy_refused")).one()
        assert event.actor == "piet@spam.example"


def test_a_portal_whose_rules_want_codes_by_sms_cannot_be_used(make_app, mailbox: Mailbox, sms_gateway) -> None:
    """A portal's sender cannot know its recipients' mobile numbers: where
    the rules need them, the first step says the page cannot be used, not
    a recipients step the portal never shows."""
    for transfer in ({"recipient_verification": "sms"}, {"recipient_verification": "sms", "password_by_sms": True}):
        app = make_app({"sms": sms_gateway.config(), "transfer": transfer, **PORTALS})
        refused = PortalSender(app, mailbox).personal()
        assert refused.status_code == 422
        assert "Nothing can be sent through this page at the moment." in plain(refused)
        assert mailbox.messages == []


def test_a_portals_sender_is_not_offered_codes_by_sms(make_app, mailbox: Mailbox, sms_gateway) -> None:
    app = make_app({
        "sms": sms_gateway.config(),
        "transfer": {"recipient_verification": "email", "recipient_verification_choice": True},
        **PORTALS,
    })
    sender = PortalSender(app, mailbox)
    sender.to_files()
    assert sender.files([REPORT]).status_code == 302
    page = text_of(sender.get("/send/options"))
    # The one check left is said, not offered as a choice.
    assert 'value="sms"' not in page and "a one-time code sent to their own email address" in page
    # A crafted "sms" is not taken: the portal's recipients get their code by email.
    sent = sender.finish([DESK, TEAM], recipient_verification="sms")
    with app.app_context():
        assert db.session().scalars(select(Transfer)).one().recipient_verification == "email"
    assert sent.access_id(DESK)


def test_rules_that_refuse_the_portal_later_send_the_sender_back_to_the_first_step(
    make_app, mailbox: Mailbox, tmp_path: Path
) -> None:
    """The operator's rules change while a sender is on the last step: the
    transaction does not start, and the first step says why."""
    instance = tmp_path / "shared"
    sender = PortalSender(make_app(PORTALS, instance=instance), mailbox)
    page = sender.to_last_step()
    closed = make_app({"rules": [{"name": "dicht", "recipients": [DESK], "action": "deny", "reason": "Tijdelijk dicht."}],
                       **PORTALS}, instance=instance)
    sender.restart_on(closed)
    mailbox.clear()
    started = sender.start(page)
    assert started.status_code == 302 and started.location.endswith("/send/recipients")
    passed = sender.get("/send/recipients")
    assert passed.status_code == 302 and passed.location.endswith("/send/")
    first = plain(sender.get("/send/"))
    assert f"You cannot send to {DESK}: Tijdelijk dicht." in first and "Send documents to Youth care" in first
    assert _started(closed) == 0 and mailbox.to(DESK) == []
    with closed.app_context():
        refused = db.session().scalars(select(Event).where(Event.kind == "policy_refused")).one()
        assert refused.actor == sender.person.email and refused.data["recipients"] == [DESK]


def test_a_portal_link_asks_before_it_discards_an_unfinished_transfer(make_app, mailbox: Mailbox) -> None:
    app = make_app(PORTALS)
    sender = PortalSender(app, mailbox)
    Sender.personal(sender)
    sender.verify()
    sender.recipients("anna@gemeente.example")
    sender.files([("eigen.pdf", b"%PDF eigen")], action="upload")
    page = sender.get("/to/jeugdzorg")
    assert "If you continue here, the unfinished transfer is discarded" in text_of(page)
    assert 'href="/send/options">Back to the unfinished transfer' in text_of(page)  # where it goes on
    assert "eigen.pdf" in text_of(sender.get("/send/files"))  # looking lost nothing

    # Verified already: on to the files step, the other draft gone with its file.
    assert sender.personal().location.endswith("/send/files")
    with app.app_context():
        assert db.session().scalars(select(Draft)).one().portal_slug == "jeugdzorg"
    files = text_of(sender.get("/send/files"))
    assert "eigen.pdf" not in files and DESK in files
    # Back from the files step leads to the first step, at the portal.
    body, content_type = multipart([("csrf_token", csrf_token(files)), ("files", ("", b"")), ("action", "back")])
    back = sender.post("/send/files", data=body, content_type=content_type)
    assert back.status_code == 302 and back.location.endswith("/send/")
    first = plain(sender.get("/send/"))
    assert "Send documents to Youth care" in first and "unfinished transfer" not in first


def test_a_removed_portal_stops_its_drafts(make_app, mailbox: Mailbox, tmp_path: Path) -> None:
    instance = tmp_path / "shared"
    tus = PortalTus(make_app(PORTALS, instance=instance), mailbox).ready()
    assert tus.files([REPORT], action="upload").status_code == 302
    gone = make_app({}, instance=instance)
    tus.restart_on(gone)
    said = "The link this transfer was started at has been taken out of use, so the transfer cannot be sent."
    for path in ("/send/", "/send/files", "/send/options", "/send/notification"):
        page = tus.get(path)
        assert page.status_code == 410 and said in text_of(page), path
    refused = tus.post("/send/notification", data={"csrf_token": csrf_token(text_of(tus.get("/send/"))), "subject": "x",
                                                   "body": "y"})
    assert refused.status_code == 410
    assert tus.create(4, name="scan.pdf").status_code == 410
    assert _started(gone) == 0 and mailbox.to(DESK) == []
    # "Start a new transaction" discards it, with its files.
    token = csrf_token(text_of(tus.get("/send/files")))
    assert tus.post("/send/new", data={"csrf_token": token}).location.endswith("/send/")
    assert tus.get("/send/").status_code == 200
    with gone.app_context():
        assert db.session().scalars(select(Draft)).all() == []


def test_a_new_transaction_after_a_portals_starts_at_the_portal(make_app, mailbox: Mailbox) -> None:
    sender = PortalSender(make_app(PORTALS), mailbox)
    sender.to_files()
    sender.files([REPORT])
    sent = sender.finish([DESK])
    token = csrf_token(sent.summary.get_data(as_text=True))
    assert sender.post("/send/new", data={"csrf_token": token}).location.endswith("/to/jeugdzorg")


@pytest.mark.parametrize(
    ("portal", "names"),
    [
        ({"slug": "Jeugd Zorg"}, "portals[0].slug: 'Jeugd Zorg' must be lower case letters, digits and hyphens"),
        ({"slug": None}, "portals[0].slug: required"),
        ({"title": None}, "portals[0].title: required"),
        ({"title": {"nl": "Jeugdzorg", "fr": "Jeunesse"}}, "portals[0].title.fr"),
        ({"title": "Twee\nregels"}, "portals[0].title: no control characters or line breaks"),
        ({"intro": {"en": ""}}, "portals[0].intro.en: must not be empty"),
        ({"recipients": []}, "portals[0].recipients: give at least one address"),
        ({"recipients": ["jeugdzorg"]}, "portals[0].recipients: 'jeugdzorg' is not an email address"),
        ({"recipients": [DESK, "JEUGDZORG@gemeente.example"]}, "portals[0].recipients: 'JEUGDZORG@gemeente.example' is listed twice"),
        ({"max_files": 0}, "portals[0].max_files: must be between"),
        ({"max_total_bytes": "1 GB"}, "portals[0].max_total_bytes"),
        ({"allowed_extensions": [".pdf"]}, "portals[0].allowed_extensions: '.pdf'"),
        ({"recipient": [DESK]}, "portals[0].recipient: unknown key"),
        ({"recipient_language": "fr"}, "portals[0].recipient_language: 'fr' is not one of site.languages"),
    ],
)
def test_a_portals_config_errors_name_the_key(tmp_path: Path, portal: dict[str, Any], names: str) -> None:
    entry = {key: value for key, value in {**YOUTH_CARE, **portal}.items() if value is not None}
    path = tmp_path / "config.toml"
    path.write_text(tomli_w.dumps({"portals": [entry]}))
    with pytest.raises(ConfigError, match=re.escape(names)):
        load_settings(path)


def test_two_portals_with_one_slug_name_the_second(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(tomli_w.dumps({"portals": [YOUTH_CARE, {**YOUTH_CARE, "slug": "wmo"}, YOUTH_CARE]}))
    with pytest.raises(ConfigError, match=re.escape("portals[2].slug: 'jeugdzorg' is already the slug of portals[0]")):
        load_settings(path)

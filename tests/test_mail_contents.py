"""What every kind of mail carries. Mail travels and is kept in clear: unless
the sender chose to show file names in the mails, no mail names a file, and
none carries the confidential message. The sender's contact details (name,
phone, verified address) are in the mails that tell recipients to contact
the sender: the first step asks for them so that the recipient can, as in
Cryptshare's notification mail. Every kind of mail the portal sends is made
here, through the real SMTP server."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask

from app import db, purge
from app.clock import utcnow

from .mailbox import Mailbox, Received
from .test_upload_requests import External, Staff, request_link
from .walker import PASSWORD, Person, Recipient, Sender

MAIL_TEMPLATES = Path(__file__).resolve().parent.parent / "app" / "templates" / "mail"
JAN = Person(name="Jan de Vries", phone="0592 987654", email="jan@zorg.example")
ANNA = Person(name="Anna Bakker", phone="050 3141592", email="anna@gemeente.example")
KEES = "kees@gemeente.example"
# A recipient whose rule asks for a one-time code by mail after the password.
CODED = "loket@gemeente.example"
# What each of them typed that no mail may carry (file names only when shown).
TYPED = {
    "file": ("Uitslag-Pietersen-4711.pdf", b"%PDF-1.4 uitslag\n"),
    "message": "Vertrouwelijk: de uitslag is 4711-XQ.",
    "reply file": ("Antwoord-Kwartel-8822.pdf", b"%PDF-1.4 antwoord\n"),
    "reply message": "Geheim antwoord 8822-ZW.",
}
FORBIDDEN = [TYPED["file"][0], TYPED["message"], TYPED["reply file"][0], TYPED["reply message"]]
# The subject of each kind, by language; a notification carries the sender's own subject.
SUBJECTS = {
    "en": {
        "verification": "Your verification code for", "confirmation": "Your transfer to",
        "retrieved": "has downloaded files of", "reminder": "Reminder:", "lockout": "Wrong passwords for your transfer",
        "withdrawn": "Withdrawn:", "recipient_code": "Your code to open the files from",
        "upload_request": "asks you to send files",
    },
    "nl": {
        "verification": "Uw verificatiecode voor", "confirmation": "Uw overdracht aan",
        "retrieved": "heeft bestanden van", "reminder": "Herinnering:",
        "lockout": "Verkeerde wachtwoorden voor uw overdracht", "withdrawn": "Ingetrokken:",
        "recipient_code": "Uw code om de bestanden van", "upload_request": "vraagt u bestanden te sturen",
    },
}


@dataclass
class Mails:
    by_kind: dict[str, list[Received]] = field(default_factory=dict)

    def add(self, language: str, received: list[Received]) -> None:
        for mail in received:
            subject = mail.message["Subject"]
            kind = next((k for k, marker in SUBJECTS[language].items() if marker in subject), "notification")
            self.by_kind.setdefault(kind, []).append(mail)

    def all(self) -> list[Received]:
        return [mail for mails in self.by_kind.values() for mail in mails]


def every_kind_of_mail(
    make_app: Callable[..., Flask], mailbox: Mailbox, language: str = "en", config: dict | None = None
) -> Mails:
    """A transfer and a reply through their whole lives, with every mail they cause."""
    app = make_app({
        "retention": {"scheduler": False, "reminder_days_before": 2},
        "rules": [{"name": "codes", "recipients": [CODED], "recipient_verification": "email"}],
        "staff": {"senders": [ANNA.email]}, **(config or {}),
    })
    made = Mails()
    jan = Sender(app, mailbox, JAN)
    jan.get(f"/lang/{language}?next=/send/")
    sent = jan.send(
        to=ANNA.email, cc=KEES, files=[TYPED["file"]], message=TYPED["message"], notify_retrieval="y",
        recipient_language=language,
    )
    made.add(language, list(mailbox.messages))

    # Anna answers with "Reply securely": a verification code for her, a notification for Jan.
    anna = Sender(app, mailbox, ANNA)
    anna.get(f"/lang/{language}?next=/send/")
    reply_link = re.search(r"https://\S+/send/reply/\S+", sent.notifications[ANNA.email].text).group(0)
    assert anna.submit(reply_link).status_code == 302
    anna.send(to=JAN.email, files=[TYPED["reply file"]], message=TYPED["reply message"], recipient_language=language)
    made.add(language, list(mailbox.messages))
    mailbox.clear()

    # Anna downloads the file: Jan hears of it.
    reader = Recipient(app)
    assert reader.unlock(sent.access_id(ANNA.email), PASSWORD).status_code == 302
    assert reader.get(next(iter(reader.file_links().values()))).status_code == 200
    with app.app_context():
        purge.run(lambda: db.new_session(app), app.extensions["koerier"], utcnow() + timedelta(minutes=10))
        # Kees has not opened it two days before it expires: a reminder.
        purge.run(lambda: db.new_session(app), app.extensions["koerier"], utcnow() + timedelta(days=6))
    # Someone guesses Kees's password: Jan hears of the lockout.
    guesser = Recipient(app)
    for _ in range(app.config["KOERIER"].download.max_attempts):
        guesser.unlock(sent.access_id(KEES), "geraden?")
    # Jan withdraws the transfer: Anna and Kees are told.
    status_link = re.search(r"/send/status/[\w-]+", sent.summary.get_data(as_text=True)).group(0)
    assert jan.submit(f"{status_link}/withdraw").status_code == 200
    made.add(language, list(mailbox.messages))
    # A transfer whose recipient confirms with a code mailed after the password.
    coded = jan.send(to=CODED, files=[TYPED["file"]], message=TYPED["message"], recipient_language=language)
    assert Recipient(app).unlock(coded.access_id(CODED), PASSWORD).location.endswith("/download/code")
    made.add(language, list(mailbox.messages))
    # Anna asks Jan for files; he sends them through the request's personal link.
    mailbox.clear()
    anna = Staff(app, mailbox, ANNA.email, language)
    assert anna.ask(name=JAN.name, email=JAN.email, language=language).status_code == 302
    answer = External(app, mailbox, request_link(mailbox, JAN.email), person=JAN)
    answer.get(f"/lang/{language}?next=/send/")
    answer.to_files()
    assert answer.files([TYPED["file"]], TYPED["message"]).status_code == 302
    answer.finish([ANNA.email], recipient_language=language)
    made.add(language, list(mailbox.messages))
    return made


def everything_in(mail: Received) -> str:
    headers = "\n".join(f"{name}: {value}" for name, value in mail.message.items())
    return "\n".join((headers, mail.text, mail.html))


@pytest.mark.parametrize("language", ["en", "nl"])
def test_no_mail_carries_file_names_or_messages(make_app, mailbox: Mailbox, language: str) -> None:
    made = every_kind_of_mail(make_app, mailbox, language)
    # Every kind of mail the portal has a template for was made, and the reply's notification too.
    assert set(made.by_kind) == {path.stem for path in MAIL_TEMPLATES.glob("*.txt")}
    assert any(mail.rcpt_tos == [JAN.email] for mail in made.by_kind["notification"])
    for mail in made.all():
        content = everything_in(mail)
        leaked = [typed for typed in FORBIDDEN if typed in content]
        assert not leaked, (mail.message["Subject"], leaked)
    if language == "nl":
        for mail in made.all():
            # Links left out: a random token in one ("…/status/To-x…") is no English word.
            words = re.sub(r"https?://[^\s\"'<>]+", "", mail.text + mail.html)
            english = re.search(r"\b(To|Dear|Files|Available until|Phone)\b", words)
            assert not english, (mail.message["Subject"], english)
    # The sender's phone with the other contact details, whether file names are shown or not
    # (a walk found it only beside file names: a recipient who needs the password had no number to call).
    for mail in made.by_kind["notification"] + made.by_kind["withdrawn"]:
        sender = JAN if JAN.name in mail.text else ANNA
        assert sender.phone in mail.text and sender.phone in mail.html, mail.message["Subject"]
    # The sender's receipt says how many files, without their names.
    receipt = made.by_kind["confirmation"][0]
    assert ("1 (17 B)" in receipt.text) and ("status page" in receipt.text or "statuspagina" in receipt.text)


def test_file_names_are_in_the_mails_when_the_sender_shows_them(sender: Sender, app, mailbox) -> None:
    sent = sender.send(files=[TYPED["file"]], expose_filenames="y", notify_retrieval="y")
    notification = sent.notifications["anna@gemeente.example"].text
    assert TYPED["file"][0] in notification and sender.person.phone in notification
    assert TYPED["file"][0] in mailbox.last_to(sender.person.email).text
    reader = Recipient(app)
    reader.unlock(sent.access_id("anna@gemeente.example"), PASSWORD)
    reader.get(reader.file_links()[TYPED["file"][0]])
    with app.app_context():
        purge.run(lambda: db.new_session(app), app.extensions["koerier"], utcnow() + timedelta(minutes=10))
    notice = mailbox.last_to(sender.person.email)
    assert "has downloaded" in notice.message["Subject"] and TYPED["file"][0] in notice.text

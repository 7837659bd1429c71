"""The mails: multipart, language, Bcc privacy, no header injection."""

from __future__ import annotations

import logging
import re
from datetime import timedelta

import pytest

from app import db, mails, purge
from app.clock import utcnow

from .mailbox import Outbox
from .walker import PASSWORD, Recipient, Sender


def test_notification_is_multipart_and_bcc_is_private(sender: Sender) -> None:
    sent = sender.send(to="anna@gemeente.example", cc="piet@gemeente.example", bcc="geheim@gemeente.example")
    for address, mail in sent.notifications.items():
        assert mail.message.get_content_type() == "multipart/alternative"
        assert mail.rcpt_tos == [address]
        assert mail.message["To"] == address
        assert "geheim@gemeente.example" not in mail.raw.decode() or address == "geheim@gemeente.example"
        assert "anna@gemeente.example" in mail.text and "piet@gemeente.example" in mail.text
        # Each recipient has an own transaction ID, given in text and HTML.
        access_id = sent.access_id(address)
        assert access_id in mail.text and access_id in mail.html
    confirmation = sender.mailbox.last_to(sender.person.email)
    assert "geheim@gemeente.example" in confirmation.text  # the sender knows


def test_file_names_only_when_exposed(sender: Sender) -> None:
    hidden = sender.send(files=[("geheim-dossier.pdf", b"x")])
    assert "geheim-dossier.pdf" not in hidden.notifications["anna@gemeente.example"].raw.decode()
    # The receipt travels in clear like any mail: the sender did not choose to show the names.
    assert "geheim-dossier.pdf" not in sender.mailbox.last_to(sender.person.email).raw.decode()


def test_no_confirmation_unless_asked(sender: Sender) -> None:
    sender.send(notify_confirmation=None)
    subjects = [m.message["Subject"] for m in sender.mailbox.to(sender.person.email)]
    assert subjects == ["Your verification code for Gemeente Voorbeeld"]


def test_edited_text_is_sent_and_html_escaped(sender: Sender) -> None:
    sender.mailbox.clear()
    sender.personal()
    sender.verify()
    sender.recipients("anna@gemeente.example")
    sender.files([("a.txt", b"a")])
    sender.options()
    r = sender.notification(subject="Dossier <b>42</b>", body="Beste Anna,\n<script>alert(1)</script>\nGroet, Jan")
    assert r.status_code == 200
    mail = sender.mailbox.last_to("anna@gemeente.example")
    assert mail.message["Subject"] == "Dossier <b>42</b>"
    assert "<script>alert(1)</script>" in mail.text
    assert "<script>" not in mail.html and "&lt;script&gt;" in mail.html


@pytest.mark.parametrize("evil", ["Jan\r\nBcc: x@evil.example", "Jan\nBcc: x@evil.example", "Jan\x00"])
def test_header_values_never_carry_line_breaks(app, evil: str) -> None:
    settings = app.config["KOERIER"]
    with app.app_context():
        message = mails.compose(settings, "anna@gemeente.example", evil, "t", "<p>t</p>", reply_to=(evil, "jan@zorg.example"))
    raw = bytes(message)
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert b"\nBcc:" not in head and b"\x00" not in head
    assert message["Bcc"] is None


def test_verification_mail_in_the_senders_language(sender: Sender) -> None:
    sender.get("/lang/nl?next=/send/")
    sender.personal()
    mail = sender.mailbox.last_to(sender.person.email)
    assert "verificatiecode" in mail.message["Subject"].lower()
    assert "Geachte heer/mevrouw" in mail.text


def test_the_receipt_names_recipient_kinds_in_the_senders_language(sender: Sender) -> None:
    sender.get("/lang/nl?next=/send/")
    sender.send(to="anna@gemeente.example", cc="kees@gemeente.example")
    receipt = sender.mailbox.last_to(sender.person.email)
    for part in (receipt.text, receipt.html):
        assert "Aan: anna@gemeente.example" in part and "Cc: kees@gemeente.example" in part
        assert "To: anna" not in part


def test_mail_server_down_keeps_input_and_stores_nothing(make_app, mailbox) -> None:
    from sqlalchemy import func, select

    from app import db
    from app.models import Draft, VerificationCode

    from .mailbox import free_port
    from .walker import text_of

    app = make_app({"mail": {"smtp_port": free_port(), "smtp_timeout_seconds": 2}})
    sender = Sender(app, mailbox)
    r = sender.personal()
    assert r.status_code == 503
    page = text_of(r)
    assert "We could not send the verification code." in page
    assert sender.person.name in page and sender.person.email in page
    with app.app_context():
        s = db.session()
        assert s.scalar(select(func.count()).select_from(VerificationCode)) == 0
        assert s.scalar(select(func.count()).select_from(Draft)) == 0


def test_outbox_mails_log_their_links_without_their_secrets(make_app, tmp_path, caplog) -> None:
    """An .eml file is quoted-printable, which breaks a link copied from an
    editor; the log names each outbox mail with its links, but keeps out the
    secrets in them (a link key, a status token), which are for the mailbox only."""
    instance = tmp_path / "instance"
    app = make_app({"mail": {"backend": "outbox"}}, instance=instance)
    sender = Sender(app, Outbox(instance / "outbox"))
    caplog.set_level(logging.INFO, logger="app.mailer")
    sent = sender.send(password_mode="none", password=None, password_repeat=None)
    link = sent.link("anna@gemeente.example")
    key = sent.link_key("anna@gemeente.example")
    status_link = re.search(r"https://\S+/send/status/\S+", sender.mailbox.last_to(sender.person.email).text).group(0)
    token = status_link.rsplit("/", 1)[-1]
    lines = [r.getMessage() for r in caplog.records if r.name == "app.mailer"]
    notice = next(line for line in lines if "mail to anna@gemeente.example" in line)
    assert sent.notifications["anna@gemeente.example"].message["Subject"] in notice
    assert link.split("#")[0] + "#…" in notice.split()
    assert status_link.replace(token, "…") in " ".join(lines)
    assert key not in " ".join(lines) and token not in " ".join(lines)


def test_the_retrieval_notice_subject_arrives_as_written(sender: Sender, app, mailbox) -> None:
    """Python's header folder doubled the space before “ where it broke the line."""
    reader = "pietje.puk.kluk@gemeente.example"
    sent = sender.send(to=reader, notify_retrieval="y")
    recipient = Recipient(app)
    recipient.unlock(sent.access_id(reader), PASSWORD)
    recipient.get(recipient.file_links()["verslag.pdf"])
    with app.app_context():
        purge.run(lambda: db.new_session(app), app.extensions["koerier"], utcnow() + timedelta(minutes=10))
    notice = mailbox.last_to(sender.person.email)
    assert notice.message["Subject"] == f"{reader} has downloaded files of “Files (1) from Jan de Vries”"


@pytest.mark.parametrize("subject", [
    "aaaaaaaaaaaaaaa@gemeente.example has downloaded files of “Dossier 42”",
    "Re: Uitslag van dhr. Ĳsbrand — vervolg op ons gesprek van gisteren over de zorg thuis",
    "Dossier " + "x" * 90 + " 42 (1)",
    "Looks encoded =?utf-8?q?x?= but is typed",
])
def test_subjects_arrive_as_written(app, mailbox, subject: str) -> None:
    mailbox.clear()
    with app.app_context():
        message = mails.compose(app.config["KOERIER"], "anna@gemeente.example", subject, "t", "<p>t</p>")
        app.extensions["koerier"].mailer.send([message])
    assert mailbox.last_to("anna@gemeente.example").message["Subject"] == subject

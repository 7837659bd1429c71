"""The whole product: send through the wizard, receive by ID and password."""

from __future__ import annotations

import hashlib
import io
import zipfile

from .walker import Recipient, Sender, csrf_token, text_of

REPORT = b"%PDF-1.4\n" + bytes(range(256)) * 1000  # crosses several 64 KiB segments
NOTES = "Gespreksverslag cliënt.txt", "Vertrouwelijk: afspraak 12 maart.\n".encode()


def test_send_and_download_with_manual_password(sender: Sender, app) -> None:
    sent = sender.send(
        to="anna@gemeente.example",
        cc="piet@gemeente.example",
        files=[("verslag.pdf", REPORT), NOTES],
        message="Zie bijlage; graag terugbellen.",
        expose_filenames="y",
    )
    page = text_of(sent.summary)
    assert "The transaction is complete" in page
    assert "verslag.pdf" in page and "anna@gemeente.example" in page

    mail = sent.notifications["anna@gemeente.example"]
    assert mail.message["Subject"] == "Files (2) from Jan de Vries"
    assert "Password: contact the sender" in mail.text
    assert "0592 123456" in mail.text and "jan@zorg.example" in mail.text
    assert "verslag.pdf" in mail.text  # names exposed on request
    assert mail.message["Reply-To"].addresses[0].addr_spec == "jan@zorg.example"
    assert mail.message.get_body(preferencelist=("html",)) is not None

    recipient = Recipient(app)
    r = recipient.unlock(sent.access_id("anna@gemeente.example"), "Zonnebloem-Kade-1987!")
    assert r.status_code == 302
    page = text_of(recipient.get("/download/transfer"))
    assert "Zie bijlage; graag terugbellen." in page
    assert "Jan de Vries" in page and "0592 123456" in page

    links = recipient.file_links()
    assert set(links) == {"verslag.pdf", "Gespreksverslag cliënt.txt"}
    got = recipient.get(links["verslag.pdf"])
    assert got.status_code == 200
    assert hashlib.sha256(got.data).digest() == hashlib.sha256(REPORT).digest()
    assert got.headers["Content-Length"] == str(len(REPORT))
    assert got.headers["Content-Disposition"] == "attachment; filename=\"verslag.pdf\"; filename*=UTF-8''verslag.pdf"

    notes = recipient.get(links["Gespreksverslag cliënt.txt"])
    assert notes.data == NOTES[1]
    assert "filename*=UTF-8''Gespreksverslag%20cli%C3%ABnt.txt" in notes.headers["Content-Disposition"]

    archive = recipient.get("/download/all")
    assert archive.headers["Content-Length"] == str(len(archive.data))
    with zipfile.ZipFile(io.BytesIO(archive.data)) as z:
        assert z.read("verslag.pdf") == REPORT
        assert z.read("Gespreksverslag cliënt.txt") == NOTES[1]

    # The Cc recipient has an own transaction ID that opens the same transfer.
    other = Recipient(app)
    assert sent.access_id("piet@gemeente.example") != sent.access_id("anna@gemeente.example")
    assert other.unlock(sent.access_id("piet@gemeente.example"), "Zonnebloem-Kade-1987!").status_code == 302

    confirmation = sender.mailbox.last_to("jan@zorg.example")
    assert "anna@gemeente.example" in confirmation.text and "piet@gemeente.example" in confirmation.text


def test_generated_password_is_shown_once_and_opens_the_transfer(sender: Sender, app) -> None:
    sent = sender.send(password_mode="generate", password=None, password_repeat=None)
    password = sent.generated_password
    assert len(password.replace("-", "")) >= 20
    assert "by phone or text message" in text_of(sent.summary)
    # Reloading the summary does not show it again.
    assert password not in sender.get("/send/done").get_data(as_text=True)
    assert password not in sent.notifications["anna@gemeente.example"].text
    recipient = Recipient(app)
    assert recipient.unlock(sent.access_id("anna@gemeente.example"), password).status_code == 302
    assert recipient.get(recipient.file_links()["verslag.pdf"]).data.startswith(b"%PDF")


def test_no_password_mode_opens_by_link_alone(sender: Sender, app) -> None:
    sent = sender.send(to="anna@gemeente.example, kees@gemeente.example", password_mode="none", password=None, password_repeat=None)
    mail = sent.notifications["anna@gemeente.example"]
    assert "Password: contact the sender" not in mail.text
    recipient = Recipient(app)
    # Following the link shows the form (the page's script fills in the key); a mail scanner's GET opens nothing.
    landing = recipient.get(sent.link("anna@gemeente.example").removeprefix("https://portal.example.nl"))
    assert landing.status_code == 200 and "Access key" in text_of(landing)
    assert recipient.get("/download/transfer").status_code == 302
    assert recipient.open_link(sent.link("anna@gemeente.example")).status_code == 302
    assert recipient.get(recipient.file_links()["verslag.pdf"]).data.startswith(b"%PDF")
    # One recipient's link secret does not open another recipient's ID.
    stranger = Recipient(app)
    crossed = sent.link("kees@gemeente.example").replace(
        sent.link_key("kees@gemeente.example"), sent.link_key("anna@gemeente.example")
    )
    assert stranger.open_link(crossed).status_code == 403


def test_message_only_transfer(sender: Sender, app) -> None:
    sent = sender.send(files=[], message="Alleen een bericht.")
    mail = sent.notifications["anna@gemeente.example"]
    assert mail.message["Subject"] == "Confidential message from Jan de Vries"
    recipient = Recipient(app)
    recipient.unlock(sent.access_id("anna@gemeente.example"), "Zonnebloem-Kade-1987!")
    assert "Alleen een bericht." in text_of(recipient.get("/download/transfer"))


def test_dutch_sender_and_recipient(sender: Sender, app) -> None:
    sender.get("/lang/nl?next=/send/")
    sent = sender.send(recipient_language="nl")
    assert "De transactie is voltooid" in text_of(sent.summary)
    mail = sent.notifications["anna@gemeente.example"]
    assert mail.message["Subject"] == "Bestanden (1) van Jan de Vries"
    assert "Wachtwoord: neem contact op met de verzender" in mail.text
    assert "Beschikbaar tot" in mail.text


def test_second_transaction_skips_verification(sender: Sender) -> None:
    sender.send()
    sender.post("/send/new", data={"csrf_token": csrf_token(sender.get("/send/done").get_data(as_text=True))})
    sender.mailbox.clear()
    r = sender.personal()
    assert r.location.endswith("/send/recipients")
    assert sender.mailbox.to(sender.person.email) == []


def start_form(sender: Sender) -> dict[str, str]:
    """A sender at the last step: the form of its "Start transaction" button."""
    sender.personal()
    sender.verify()
    sender.recipients("anna@gemeente.example")
    sender.files([("a.txt", b"a")])
    sender.options()
    page = sender.get("/send/notification").get_data(as_text=True)
    return {"csrf_token": csrf_token(page), "subject": "Dossier", "body": "Tekst"}


def test_a_second_click_on_start_transaction_shows_the_summary(sender: Sender) -> None:
    data = start_form(sender)
    assert sender.post("/send/notification", data=data).status_code == 200
    again = sender.post("/send/notification", data=data)
    assert again.status_code == 302 and again.location.endswith("/send/done")
    assert len(sender.mailbox.to("anna@gemeente.example")) == 1


def test_parallel_clicks_on_start_transaction_make_one_transfer(make_live, mailbox) -> None:
    """Each answer, whichever comes last, leads the browser to that one transfer's summary; none is a 500."""
    from concurrent.futures import ThreadPoolExecutor

    import requests
    from sqlalchemy import func, select

    from app import db
    from app.models import Transfer

    app, server = make_live(workers=2, threads=4)
    for attempt in range(3):
        sender = Sender(app, mailbox)
        sender.person.email = f"jan{attempt}@zorg.example"
        data = start_form(sender)
        cookie = sender.cookie_header()

        def click(_: int) -> requests.Response:
            return requests.post(
                server.url + "/send/notification", data=data, headers={"Cookie": cookie}, allow_redirects=False, timeout=60
            )

        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(click, range(4)))
        assert sorted(a.status_code for a in answers)[0] in (200, 302) and 500 not in [a.status_code for a in answers]
        assert [a.status_code for a in answers].count(200) == 1
        for answer in answers:
            if answer.status_code == 302:
                assert answer.headers["Location"].endswith("/send/done")
                # The answer's own session cookie (Secure, so set by hand over plain http).
                session_cookie = "; ".join(f"{c.name}={c.value}" for c in answer.cookies)
                summary = requests.get(
                    server.url + "/send/done", headers={"Cookie": session_cookie, "Accept-Language": "en"},
                    allow_redirects=False, timeout=30,
                )
                assert summary.status_code == 200 and "The transaction is complete" in summary.text
    with app.app_context():
        assert db.session().scalar(select(func.count()).select_from(Transfer)) == 3


def test_a_second_click_that_arrives_after_the_first_finished_finds_the_summary(sender: Sender, app) -> None:
    """The second click carries the cookie from before the first answer: the
    draft it names is gone, and the transfer it became is what it gets."""
    import copy

    data = start_form(sender)
    before = copy.deepcopy(sender.client._cookies)
    assert sender.post("/send/notification", data=data).status_code == 200
    sender.client._cookies = before
    again = sender.post("/send/notification", data=data)
    assert again.status_code == 302 and again.location.endswith("/send/done")
    summary = sender.get("/send/done")
    assert summary.status_code == 200 and "The transaction is complete" in text_of(summary)
    assert "anna@gemeente.example" in text_of(summary)

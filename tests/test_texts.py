"""What the pages and mails say: each text says what is true, once, in the reader's language."""

from __future__ import annotations

import re

from .test_my_transfers import Owner, transfer_id
from .test_wizard_validation import walk_to
from .walker import PASSWORD, Recipient, Sender, csrf_token, text_of

AGB = {"password": {"patterns": [{"name": "AGB", "regex": r"^Agb\d{8}!$", "hint": "Agb + uw AGB-code + !"}]}}
CONVENTION = "This password matches the agreed convention “AGB”."


def test_an_agb_password_is_called_conventional_never_strong(make_app, mailbox) -> None:
    """AGB codes are public (the Vektis register): such a password is agreed, not strong."""
    sender = Sender(make_app(AGB), mailbox)
    walk_to(sender, "options")
    token = csrf_token(sender.get("/send/options").get_data(as_text=True))
    live = sender.post("/send/options/strength", json={"password": "Agb12345678!"}, headers={"X-CSRFToken": token}).json
    assert live["acceptable"] and live["pattern"] == "AGB" and live["label"] == CONVENTION
    assert not live["warning"] and not live["suggestions"]  # zxcvbn's advice is not for an agreed pattern
    # The page without scripts says the same (shown again because the repeat differs).
    page = text_of(sender.options(password="Agb12345678!", password_repeat="Agb12345678?"))
    assert CONVENTION in page and "Strong" not in page
    sender.get("/lang/nl?next=/send/options")
    live = sender.post("/send/options/strength", json={"password": "Agb12345678!"}, headers={"X-CSRFToken": token}).json
    assert live["label"] == "Dit wachtwoord volgt het afgesproken patroon “AGB”."


def test_help_says_how_addresses_may_be_separated(app) -> None:
    help_page = text_of(app.test_client().get("/help", headers={"Accept-Language": "en"}))
    assert "one per line" not in help_page
    assert "separated by commas, semicolons, spaces or new lines" in help_page


def test_the_withdraw_result_says_withdrawn_once(sender: Sender) -> None:
    for language, word in (("en", "withdrawn"), ("nl", "ingetrokken")):
        sender.get(f"/lang/{language}?next=/send/")
        sent = sender.send()
        status_link = re.search(r"/send/status/[\w-]+", sent.summary.get_data(as_text=True)).group(0)
        result = sender.submit(f"{status_link}/withdraw")
        assert result.status_code == 200
        main = text_of(result).split('id="main"', 1)[1].split("</main>")[0]
        assert main.count(word) == 1, main


def test_an_empty_file_is_offered_for_download_not_for_preview(sender: Sender, app) -> None:
    sent = sender.send(files=[("leeg.txt", b""), ("notitie.txt", b"tekst")])
    recipient = Recipient(app)
    recipient.unlock(sent.access_id("anna@gemeente.example"), PASSWORD)
    page = recipient.get("/download/transfer").get_data(as_text=True)
    previews = re.findall(r'aria-label="Preview ([^"]+)"', page)
    assert previews == ["notitie.txt"]
    empty = recipient.file_links()["leeg.txt"]
    assert recipient.get(empty).status_code == 200 and recipient.get(empty + "/preview").status_code == 404


def test_the_options_page_names_the_notification_mail_as_the_glossary_does(sender: Sender) -> None:
    """It said "notificatiemail" beside "kennisgevingsmail" ("notification e-mail" beside "notification mail")."""
    walk_to(sender, "options")
    for language, term, other in (("nl", "kennisgevingsmail", "notificatie"), ("en", "notification mail", "notification e-mail")):
        sender.get(f"/lang/{language}?next=/send/options")
        page = text_of(sender.get("/send/options")).lower()
        assert term in page and other not in page, language


def test_the_files_step_names_the_confidential_message_once(sender: Sender) -> None:
    """Once, as the heading that is also the field's label: it was a heading with the same label beneath it."""
    walk_to(sender, "files")
    for language, name in (("nl", "Vertrouwelijk bericht"), ("en", "Confidential message")):
        sender.get(f"/lang/{language}?next=/send/files")
        main = text_of(sender.get("/send/files")).split('id="main"', 1)[1].split("</main>")[0]
        assert main.count(name) == 1, main
        assert f'<h2><label for="message">{name}</label></h2>' in main
        assert re.search(r'<textarea[^>]*id="message"', main)


def listed(section: str) -> list[str]:
    """The items of the lists in a part of a page or an HTML mail, without their sizes."""
    return [item.split(" (")[0].strip() for item in re.findall(r"<li>(.*?)</li>", section, re.S)]


def between(page: str, start: str, end: str) -> str:
    return page.split(start, 1)[1].split(end, 1)[0]


def test_the_confidential_message_is_no_file_in_any_list(sender: Sender, app) -> None:
    """The summary, the sender's receipt and My transfers listed "Confidential message" among
    the files. It is said beside them, and neither counted nor sized with them, anywhere."""
    sent = sender.send(files=[("verslag.pdf", b"%PDF-1.4 tien")], message="Zie het verslag.", expose_filenames="y")
    summary = text_of(sent.summary)
    files = between(summary, "<h2>Files</h2>", "<h2>")
    assert listed(files) == ["verslag.pdf"] and "The transfer also contains a confidential message." in files
    status = text_of(sender.get(re.search(r'href="[^"]*(/send/status/[^"]+)"', summary).group(1)))
    assert listed(between(status, "<h2>Files</h2>", "<h2>")) == ["verslag.pdf"]

    receipt = sender.mailbox.last_to(sender.person.email)
    files_in_text = between(receipt.text, "Files: ", "\n\n")
    assert files_in_text.startswith("1 (13 B)") and "The transfer also contains a confidential message." in files_in_text
    assert [line for line in files_in_text.splitlines() if line.startswith("- ")] == ["- verslag.pdf (13 B)"]
    assert listed(between(receipt.html, "Files: 1 (13 B)", "Available until")) == ["verslag.pdf"]

    notification = sent.notifications["anna@gemeente.example"]
    assert listed(between(notification.html, "Files in this transfer", "</ul>") + "</ul>") == ["verslag.pdf"]
    anna = Recipient(app)
    anna.unlock(sent.access_id("anna@gemeente.example"), PASSWORD)
    assert list(anna.file_links()) == ["verslag.pdf"]

    owner = Owner(app, sender.mailbox)
    owner.verify()
    mine = text_of(owner.get(f"/mine/{transfer_id(app, 'Files (1) from Jan de Vries')}"))
    files = between(mine, "<h2>Files</h2>", "<h2>")
    assert listed(files) == ["verslag.pdf"] and "The transfer also contains a confidential message." in files

    # A message alone: no list with one item that is not a file.
    only = sender.send(files=[], message="Alleen een bericht.")
    assert listed(between(text_of(only.summary), "<h2>Files</h2>", "<h2>")) == []
    receipt = sender.mailbox.last_to(sender.person.email)
    assert "No files; a confidential message only." in receipt.text and "\n- " not in between(receipt.text, "Files: ", "\n\n")


def test_dutch_says_a_transaction_id_is_locked_for_a_while_as_people_say_it(sender: Sender, app) -> None:
    """"een tijd geblokkeerd" read as a word-for-word "locked for a while"; Dutch says "tijdelijk"."""
    sent = sender.send()
    guesser = Recipient(app)
    guesser.get("/lang/nl?next=/download/")
    refused = text_of(guesser.unlock(sent.access_id("anna@gemeente.example"), "geraden?"))
    assert "voordat deze transactie-ID tijdelijk wordt geblokkeerd" in refused
    help_page = text_of(app.test_client().get("/help", headers={"Accept-Language": "nl"}))
    assert "wordt de transactie-ID tijdelijk geblokkeerd" in help_page
    assert "een tijd" not in refused + help_page


def test_dutch_reads_naturally_on_the_steps(sender: Sender) -> None:
    """A walk in Dutch found a file's status "Wacht" (an order: "Wait"), "het
    transactie-ID" beside "de transactie-ID" everywhere else, and "leave this
    field empty" under two password fields."""
    sender.get("/lang/nl?next=/send/")
    walk_to(sender, "files")
    files = sender.get("/send/files").get_data(as_text=True)
    assert '"waiting": "In de wachtrij"' in files
    assert sender.files([("a.txt", b"abc")]).status_code == 302
    assert sender.options().status_code == 302
    options = text_of(sender.get("/send/options"))
    assert "Laat beide velden leeg om het eerder ingevoerde wachtwoord te behouden." in options
    summary = sender.notification().get_data(as_text=True)
    assert 'aria-label="De transactie-ID voor anna@gemeente.example kopiëren"' in summary
    assert "Het transactie-ID" not in summary

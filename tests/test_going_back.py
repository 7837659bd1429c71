""""Back" on every step of the wizard saves what was typed, as "Next" does,
and then goes back; what cannot be saved is shown with the reason, kept, on
the same step. Back was a link, which left it all behind: a browser walk
found an edited notification mail replaced by the portal's text."""

from __future__ import annotations

import html
import re
from datetime import date, timedelta

from .test_wizard_validation import walk_to
from .walker import PASSWORD, Sender, text_of

EDITED_SUBJECT = "Het dossier van mevrouw Jansen"
EDITED_BODY = "Beste Anna,\r\n\r\nHierbij het dossier, zoals besproken.\r\n\r\nJan"


def back(sender: Sender, path: str, **data: str):  # type: ignore[no-untyped-def]
    return sender.submit(path, {**data, "action": "back"})


def shown(sender: Sender, path: str) -> str:
    return text_of(sender.get(path))


def field_value(page: str, name: str) -> str:
    found = re.search(rf'<input[^>]*name="{name}"[^>]*value="([^"]*)"', page) or re.search(
        rf'<textarea[^>]*name="{name}"[^>]*>\s*(.*?)</textarea>', page, re.S
    )
    assert found, f"no field {name}"
    return html.unescape(found.group(1)).replace("\r\n", "\n")


def test_an_edited_notification_mail_survives_going_back(sender: Sender) -> None:
    walk_to(sender, "options")
    assert sender.options().status_code == 302
    r = sender.notification(subject=EDITED_SUBJECT, body=EDITED_BODY, action="back")
    assert r.status_code == 302 and r.location.endswith("/send/options")
    assert sender.options().status_code == 302
    page = sender.get("/send/notification").get_data(as_text=True)
    assert field_value(page, "subject") == EDITED_SUBJECT
    assert field_value(page, "body") == EDITED_BODY.replace("\r\n", "\n")
    # What is sent is what the sender wrote.
    assert sender.notification().status_code == 200
    mail = sender.mailbox.last_to("anna@gemeente.example")
    assert mail.message["Subject"] == EDITED_SUBJECT and "Hierbij het dossier, zoals besproken." in mail.text


def test_text_left_as_proposed_is_proposed_anew_for_the_options_chosen_later(sender: Sender) -> None:
    """The proposal names the expiration date and is in the recipients'
    language: left unchanged, it follows those options when they change. A
    text the sender changed is theirs, and stays as they wrote it."""
    walk_to(sender, "options")
    assert sender.options(recipient_language="en").status_code == 302
    proposed = sender.get("/send/notification").get_data(as_text=True)
    assert field_value(proposed, "body").startswith("Dear Sir or Madam,")
    # The subject changed, the text left as proposed.
    assert sender.notification(subject=EDITED_SUBJECT, action="back").status_code == 302
    options = sender.get("/send/options").get_data(as_text=True)
    later = date.fromisoformat(field_value(options, "expires_on")) + timedelta(days=2)
    assert sender.options(recipient_language="nl", expires_on=later.isoformat()).status_code == 302
    page = sender.get("/send/notification").get_data(as_text=True)
    assert field_value(page, "subject") == EDITED_SUBJECT
    assert field_value(page, "body").startswith("Geachte heer/mevrouw,")
    assert field_value(page, "body") != field_value(proposed, "body")

    # The other way round; the browser sends the text's line breaks as CRLF.
    r = sender.notification(subject="Bestanden (1) van Jan de Vries", body=EDITED_BODY, action="back")
    assert r.status_code == 302
    assert sender.options(recipient_language="en").status_code == 302
    page = sender.get("/send/notification").get_data(as_text=True)
    assert field_value(page, "subject") == "Files (1) from Jan de Vries"
    assert field_value(page, "body") == EDITED_BODY.replace("\r\n", "\n")



def test_a_text_kept_through_a_change_of_language_says_so_and_the_proposal_can_be_taken(sender: Sender) -> None:
    """A walk found a changed notification text kept, without a word, in the
    language it was written for after the recipient language changed. The
    step says so, and offers the text proposed for the language chosen now."""
    walk_to(sender, "options")
    assert sender.options(recipient_language="nl").status_code == 302
    assert sender.notification(body=EDITED_BODY, action="back").status_code == 302
    # On again in the same language: nothing to say.
    assert sender.options(recipient_language="nl").status_code == 302
    assert "Use the proposed text" not in shown(sender, "/send/notification")
    # Back once more, the text left as it was: it is still the one written for Dutch.
    assert sender.notification(action="back").status_code == 302
    assert sender.options(recipient_language="de").status_code == 302
    page = shown(sender, "/send/notification")
    assert "You changed this text when the recipient language was Nederlands." in page
    assert "the recipient language is now Deutsch" in page and "Use the proposed text in Deutsch" in page
    assert field_value(page, "body") == EDITED_BODY.replace("\r\n", "\n")
    r = sender.submit("/send/notification", {"action": "propose"})
    assert r.status_code == 302 and r.location.endswith("/send/notification")
    page = shown(sender, "/send/notification")
    assert field_value(page, "body").startswith("Sehr geehrte Damen und Herren,")
    assert field_value(page, "subject") == "Dateien (1) von Jan de Vries"
    assert "Use the proposed text" not in page

def test_a_notification_mail_that_cannot_be_saved_stops_back_and_says_why(sender: Sender) -> None:
    walk_to(sender, "options")
    assert sender.options().status_code == 302
    r = sender.notification(subject="", body=EDITED_BODY, action="back")
    assert r.status_code == 422
    page = text_of(r)
    assert "Please enter a subject." in page and "Hierbij het dossier, zoals besproken." in page
    assert sender.mailbox.to("anna@gemeente.example") == []



def test_back_on_the_first_step_keeps_what_was_typed_and_sends_nothing(sender: Sender) -> None:
    """The first step's Back was a link, unlike every other step's: what was
    typed stayed behind. It is a button of the form too. With no step before
    it, it leads to the start page, and the step shows what was typed when
    the sender comes to it again; no code is sent, that is for "Next"."""
    page = sender.get("/send/").get_data(as_text=True)
    assert re.search(r'<button[^>]*name="action"[^>]*value="back"[^>]*>Back</button>', page)
    # Not all of it valid yet: kept all the same, to finish later.
    r = back(sender, "/send/", name="Jan de Vries", phone="0592 1", email="jan@zorg.example")
    assert r.status_code == 200 and "Exchange files securely" in text_of(r)
    page = sender.get("/send/").get_data(as_text=True)
    assert [field_value(page, name) for name in ("name", "phone", "email")] == ["Jan de Vries", "0592 1", "jan@zorg.example"]
    assert "Please enter a phone number" not in page
    assert sender.mailbox.to("jan@zorg.example") == []
    assert sender.personal().location.endswith("/send/verify")

def test_recipients_typed_are_saved_by_back_and_by_change(sender: Sender) -> None:
    walk_to(sender, "recipients")
    r = back(sender, "/send/recipients", to="anna@gemeente.example", cc="kees@gemeente.example", bcc="")
    assert r.status_code == 302 and r.location.endswith("/send/")
    page = shown(sender, "/send/recipients")
    assert "anna@gemeente.example" in page and "kees@gemeente.example" in page
    # "Change" (the sender's address) is a button of the same form.
    assert re.search(r'<button[^>]*form="step-form"[^>]*value="back"[^>]*>Change</button>', page)
    # Nothing typed: back, with no word about a missing recipient.
    assert back(sender, "/send/recipients", to="", cc="", bcc="").status_code == 302
    # An address that is none: said, and kept, on this step.
    r = back(sender, "/send/recipients", to="anna@gemeente.example, kees@@gemeente", cc="", bcc="")
    assert r.status_code == 422
    page = text_of(r)
    assert "“kees@@gemeente” is not a valid email address." in page and "anna@gemeente.example, kees@@gemeente" in page


def test_the_message_and_files_are_saved_by_back(sender: Sender) -> None:
    walk_to(sender, "files")
    r = sender.files([("notitie.txt", b"abc")], message="Eerste versie", action="back")
    assert r.status_code == 302 and r.location.endswith("/send/recipients")
    page = shown(sender, "/send/files")
    assert "notitie.txt" in page and "Eerste versie" in page
    # A saved message changed: the page shows the change (the copy the
    # page's script keeps in the tab only ever fills an empty field).
    assert sender.files([], message="Tweede versie", action="back").status_code == 302
    page = shown(sender, "/send/files")
    assert "Tweede versie" in page and "Eerste versie" not in page


def test_options_are_saved_by_back(sender: Sender) -> None:
    walk_to(sender, "options")
    options = sender.get("/send/options").get_data(as_text=True)
    later = (date.fromisoformat(field_value(options, "expires_on")) + timedelta(days=3)).isoformat()
    r = sender.options(
        expires_on=later, recipient_language="nl", notify_confirmation=None,
        password_mode="generate", password=None, password_repeat=None, action="back",
    )
    assert r.status_code == 302 and r.location.endswith("/send/files")
    page = sender.get("/send/options").get_data(as_text=True)
    assert field_value(page, "expires_on") == later
    assert re.search(r'<option[^>]*selected[^>]*value="nl"|<option[^>]*value="nl"[^>]*selected', page)
    assert re.search(r'<input checked[^>]*value="generate"', page)
    assert not re.search(r'<input checked[^>]*name="notify_confirmation"', page)
    # A password still to be typed: back all the same; Next asks for it.
    none_typed = {"password_mode": "manual", "password": None, "password_repeat": None}
    assert sender.options(**none_typed, action="back").status_code == 302
    assert re.search(r'<input checked[^>]*value="manual"', sender.get("/send/options").get_data(as_text=True))
    assert sender.options(**none_typed).status_code == 422
    # One typed is kept (sealed, as "Next" keeps it): Next needs no second typing.
    assert sender.options(password=PASSWORD, password_repeat=PASSWORD, action="back").status_code == 302
    assert "Leave empty to keep the password you entered before." in shown(sender, "/send/options")
    assert sender.options(**none_typed).status_code == 302
    # A password that cannot be kept stops Back, and says why.
    r = sender.options(password=PASSWORD, password_repeat=PASSWORD + "x", action="back")
    assert r.status_code == 422 and "The two passwords are not the same." in text_of(r)


def test_a_start_the_rules_send_back_keeps_the_edit_and_proposes_the_rest_anew(make_app, mailbox, tmp_path) -> None:
    """Sent back to the options because the operator tightened the rules
    meanwhile, as if by "Back": what the sender changed stays, the text they
    left as proposed is proposed anew for the options chosen then."""
    instance = tmp_path / "shared"
    sender = Sender(make_app(instance=instance), mailbox)
    walk_to(sender, "options")
    assert sender.options(password_mode="generate", password=None, password_repeat=None).status_code == 302
    page = sender.get("/send/notification").get_data(as_text=True)
    sender.restart_on(make_app({"password": {"modes": ["manual"], "default_mode": "manual"}}, instance=instance))
    r = sender.submit("/send/notification", {"subject": EDITED_SUBJECT, "body": field_value(page, "body")})
    assert r.status_code == 302 and r.location.endswith("/send/options")
    assert sender.options(recipient_language="nl").status_code == 302
    page = sender.get("/send/notification").get_data(as_text=True)
    assert field_value(page, "subject") == EDITED_SUBJECT
    assert field_value(page, "body").startswith("Geachte heer/mevrouw,")

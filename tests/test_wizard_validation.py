"""Every bad input gets a clear message and keeps what was entered."""

from __future__ import annotations

import pytest

from .walker import Sender, csrf_token, multipart, text_of


def walk_to(sender: Sender, step: str) -> None:
    order = ["personal", "verify", "recipients", "files", "options"]
    actions = {
        "personal": lambda: sender.personal(),
        "verify": lambda: sender.verify(),
        "recipients": lambda: sender.recipients("anna@gemeente.example"),
        "files": lambda: sender.files([("a.txt", b"abc")]),
        "options": lambda: sender.options(),
    }
    for name in order[: order.index(step)]:
        assert actions[name]().status_code == 302


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("name", "", "Please enter your name."),
        ("phone", "", "Please enter your phone number."),
        ("phone", "call me", "Please enter a phone number"),
        ("email", "", "Please enter your email address."),
        ("email", "jan@", "This is not a valid email address."),
        ("email", "jan@zorg.example\r\nBcc: x@evil.example", "This is not a valid email address."),
        ("name", "Jan\r\nBcc: x@evil.example", "Please use letters, digits and punctuation only."),
    ],
)
def test_personal_data_errors_keep_input(sender: Sender, field: str, value: str, message: str) -> None:
    r = sender.personal(**{field: value})
    assert r.status_code == 422
    page = text_of(r)
    assert message in page
    assert 'aria-invalid="true"' in r.get_data(as_text=True)
    for other in {"name", "phone", "email"} - {field}:
        assert getattr(sender.person, other) in page


@pytest.mark.parametrize(
    ("to", "cc", "bcc", "message"),
    [
        ("", "", "", "Please enter at least one recipient."),
        ("anna@gemeente.example; kees@@gemeente", "", "", "“kees@@gemeente” is not a valid email address."),
        ("anna@gemeente.example", "geen-adres", "", "“geen-adres” is not a valid email address."),
        ("", "anna@gemeente.example", "", "Please enter at least one recipient."),
    ],
)
def test_recipient_errors_name_the_address_and_keep_input(sender: Sender, to: str, cc: str, bcc: str, message: str) -> None:
    walk_to(sender, "recipients")
    r = sender.recipients(to, cc, bcc)
    assert r.status_code == 422
    page = text_of(r)
    assert message in page
    for kept in (to, cc, bcc):
        assert kept in page


def test_pasted_lists_are_split_validated_and_deduplicated(sender: Sender, app) -> None:
    walk_to(sender, "recipients")
    pasted = "Anna <ANNA@gemeente.example>; kees@gemeente.example,\npiet@gemeente.example  anna@gemeente.example"
    assert sender.recipients(pasted, cc="kees@gemeente.example; lot@gemeente.example").status_code == 302
    page = text_of(sender.get("/send/recipients"))
    assert page.count("anna@gemeente.example") == 1
    assert "lot@gemeente.example" in page and page.count("kees@gemeente.example") == 1



def test_an_address_under_to_and_under_bcc_is_not_dropped_from_bcc_without_a_word(sender: Sender) -> None:
    """A walk found an address typed under To (or Cc) and under Bcc dropped
    from Bcc without a word: a sender who meant it hidden would have it shown
    to every recipient. It is said, with all that was typed kept, for the
    sender to choose."""
    walk_to(sender, "recipients")
    r = sender.recipients("anna@gemeente.example", cc="kees@gemeente.example", bcc="Anna@gemeente.example, piet@gemeente.example")
    assert r.status_code == 422
    page = text_of(r)
    assert "“anna@gemeente.example” is under To or Cc as well, where every recipient sees it." in page
    assert "Anna@gemeente.example, piet@gemeente.example" in page and "kees@gemeente.example" in page
    r = sender.recipients("anna@gemeente.example", cc="kees@gemeente.example", bcc="kees@gemeente.example")
    assert r.status_code == 422 and "“kees@gemeente.example” is under To or Cc as well" in text_of(r)
    assert sender.recipients("anna@gemeente.example", bcc="piet@gemeente.example").status_code == 302

def test_files_step_needs_a_file_or_message(sender: Sender) -> None:
    walk_to(sender, "files")
    r = sender.files([], message="")
    assert r.status_code == 422
    assert "Please add at least one file or a confidential message." in text_of(r)


def test_the_files_page_shown_after_an_error_can_be_sent_again(sender: Sender) -> None:
    """Its form carries a fresh token: the next post goes through, and the typed message stays."""
    sender.personal()
    sender.verify()
    sender.recipients("anna@gemeente.example")
    body, content_type = multipart([("csrf_token", sender.upload_token()), ("message", ""), ("action", "next")])
    failed = sender.post("/send/files", data=body, content_type=content_type)
    assert failed.status_code == 422
    token = csrf_token(failed.get_data(as_text=True))
    body, content_type = multipart([
        ("csrf_token", token), ("files", ("verslag.pdf", b"%PDF-1.4")), ("message", "Zie bijlage."), ("action", "next"),
    ])
    again = sender.post("/send/files", data=body, content_type=content_type)
    assert again.status_code == 302 and again.location.endswith("/send/options")


@pytest.mark.parametrize(
    ("config", "refused", "status"),
    [
        ({}, ("setup.exe", b"MZ"), 422),
        ({"transfer": {"max_files": 1}}, ("twee.pdf", b"%PDF-1.4"), 422),
        ({"transfer": {"max_total_bytes": 1024 * 1024}}, ("groot.zip", b"z" * (4 * 1024 * 1024)), 413),
    ],
)
def test_after_a_refused_file_the_page_takes_the_next_post(make_app, mailbox, config, refused, status) -> None:
    """Without JavaScript: the page that names a refused file carries its
    token, so the next upload and "Next" go through (not 400)."""
    sender = Sender(make_app(config), mailbox)
    walk_to(sender, "files")
    parts = [("csrf_token", sender.upload_token())]
    if "max_files" in config.get("transfer", {}):
        parts.append(("files", ("een.pdf", b"%PDF-1.4")))
    body, content_type = multipart([*parts, ("files", refused), ("message", ""), ("action", "upload")])
    failed = sender.post("/send/files", data=body, content_type=content_type)
    assert failed.status_code == status
    assert refused[0] in text_of(failed) or status == 413
    body, content_type = multipart([
        ("csrf_token", csrf_token(failed.get_data(as_text=True))), ("files", ("", b"")), ("message", "Zie bijlage."),
        ("action", "next"),
    ])
    again = sender.post("/send/files", data=body, content_type=content_type)
    assert again.status_code == 302 and again.location.endswith("/send/options"), text_of(again)


def test_too_large_file_is_named_and_others_and_message_stay(make_app, mailbox) -> None:
    app = make_app({"transfer": {"max_total_bytes": 100_000}})
    sender = Sender(app, mailbox)
    walk_to(sender, "files")
    r = sender.files([("klein.txt", b"x" * 1000), ("groot.zip", b"y" * 200_000)], message="Mijn bericht", action="upload")
    assert r.status_code == 422
    page = text_of(r)
    assert "“groot.zip” was not added" in page
    assert "klein.txt" in page and "Mijn bericht" in page
    assert "groot.zip" not in page.split("Please check the following")[1].split("</ul>")[1]
    # Nothing of the refused file is left in the store.
    store = app.extensions["koerier"].store.root
    blobs = [p for p in store.rglob("*") if p.is_file()]
    assert len(blobs) == 1 and not any(p.suffix == ".partial" for p in blobs)


def test_file_count_limit(make_app, mailbox) -> None:
    app = make_app({"transfer": {"max_files": 2}})
    sender = Sender(app, mailbox)
    walk_to(sender, "files")
    r = sender.files([("1.txt", b"1"), ("2.txt", b"2"), ("3.txt", b"3")], action="upload")
    assert "“3.txt” was not added: a transfer can hold at most 2 files." in text_of(r)


def test_request_larger_than_the_limit_is_refused_before_reading(make_app, mailbox) -> None:
    import io

    from sqlalchemy import func, select

    from app import db
    from app.models import StoredFile

    from .walker import csrf_token, multipart

    app = make_app({"transfer": {"max_total_bytes": 1000}})
    sender = Sender(app, mailbox)
    walk_to(sender, "files")
    token = csrf_token(sender.get("/send/files").get_data(as_text=True))
    body, content_type = multipart([("csrf_token", token), ("files", ("groot.zip", b"z" * (3 * 1024 * 1024)))])
    stream = io.BytesIO(body)
    r = sender.post("/send/files", input_stream=stream, content_length=len(body), content_type=content_type)
    assert r.status_code == 413
    # Refused on its declared length: not a byte of the body was read, nothing stored.
    assert stream.tell() == 0
    assert not [p for p in app.extensions["koerier"].store.root.rglob("*") if p.is_file()]
    with app.app_context():
        assert db.session().scalar(select(func.count()).select_from(StoredFile)) == 0


def test_upload_without_csrf_token_stores_nothing(sender: Sender, app) -> None:
    from .walker import multipart

    walk_to(sender, "files")
    body, content_type = multipart([("files", ("a.txt", b"data")), ("action", "next")])
    r = sender.post("/send/files", data=body, content_type=content_type)
    assert r.status_code == 400
    assert not [p for p in app.extensions["koerier"].store.root.rglob("*") if p.is_file()]


def test_files_can_be_removed(sender: Sender, app) -> None:
    from .walker import csrf_token

    walk_to(sender, "files")
    sender.files([("weg.txt", b"remove me"), ("blijft.txt", b"keep")], action="upload")
    page = sender.get("/send/files").get_data(as_text=True)
    import re

    remove = re.search(r'action="(/send/files/[^"]+/remove)"', page).group(1)
    assert "weg.txt" in page.split(remove)[0].rsplit("<tr>", 1)[1]
    assert sender.post(remove, data={"csrf_token": csrf_token(page)}).status_code == 302
    page = text_of(sender.get("/send/files"))
    # Named once more, in the word that it has been removed.
    assert "“weg.txt” has been removed." in page and page.count("weg.txt") == 1 and "blijft.txt" in page
    assert len([p for p in app.extensions["koerier"].store.root.rglob("*") if p.is_file()]) == 1


def test_file_names_are_cleaned(sender: Sender) -> None:
    walk_to(sender, "files")
    sender.files([("..\\..\\etc/passwd", b"1"), ("rapport\u202etxt.pdf", b"2")], action="upload")
    page = text_of(sender.get("/send/files"))
    assert "passwd" in page and "etc/passwd" not in page and "..\\" not in page
    assert "rapporttxt.pdf" in page and "\u202e" not in page


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"expires_on": "2000-01-01"}, "The expiration date cannot be in the past."),
        ({"expires_on": "2999-01-01"}, "The expiration date can be at most 30 days from today."),
        ({"expires_on": "morgen"}, "Not a valid date value."),
        ({"password": "kort", "password_repeat": "kort"}, "The password must have at least 10 characters."),
        # Left empty: an answer, not a server error from the strength estimate.
        ({"password": "", "password_repeat": ""}, "The password must have at least 10 characters."),
        ({"password": "wachtwoord123", "password_repeat": "wachtwoord123"}, "This password is too easy to guess."),
        ({"password_repeat": "Iets-Anders-99"}, "The two passwords are not the same."),
        ({"password": "JanDeVries1", "password_repeat": "JanDeVries1"}, "This password is too easy to guess."),
        ({"password_mode": "banaan"}, "Not a valid choice."),
    ],
)
def test_option_errors(sender: Sender, overrides: dict[str, str], message: str) -> None:
    walk_to(sender, "options")
    r = sender.options(**overrides)
    assert r.status_code == 422
    page = text_of(r)
    assert message in page
    # What was typed is still there.
    if "expires_on" in overrides and overrides["expires_on"] != "morgen":
        assert overrides["expires_on"] in page


def test_weak_password_shows_strength_and_advice(sender: Sender) -> None:
    walk_to(sender, "options")
    page = text_of(sender.options(password="wachtwoord123", password_repeat="wachtwoord123"))
    assert "Password strength:" in page and "Weak" in page


def test_agb_pattern_is_accepted_though_zxcvbn_calls_it_weak(make_app, mailbox) -> None:
    # At the strictest score zxcvbn rejects the AGB convention; the pattern carries it.
    app = make_app({"password": {"min_score": 4, "patterns": [{"name": "AGB", "regex": r"^Agb\d{8}!$", "hint": "Agb + uw AGB-code + !"}]}})
    sender = Sender(app, mailbox)
    walk_to(sender, "options")
    assert sender.options(password="Agb12345678!", password_repeat="Agb12345678!").status_code == 302
    # Not a full match: judged by strength alone.
    r = sender.options(password="Agb1234567!", password_repeat="Agb1234567!")
    assert r.status_code == 422 and "or use the agreed convention" in text_of(r)


def test_without_an_agreed_pattern_the_advice_does_not_mention_one(sender: Sender) -> None:
    walk_to(sender, "options")
    page = text_of(sender.options(password="wachtwoord123", password_repeat="wachtwoord123"))
    assert "three or four unrelated words" in page and "agreed convention" not in page


def test_operator_can_restrict_password_modes(make_app, mailbox) -> None:
    app = make_app({"password": {"modes": ["manual"], "default_mode": "manual"}})
    sender = Sender(app, mailbox)
    walk_to(sender, "options")
    assert 'value="none"' not in sender.get("/send/options").get_data(as_text=True)
    r = sender.options(password_mode="none")
    assert r.status_code == 422 and "Not a valid choice." in text_of(r)


def test_notification_errors_keep_input(sender: Sender) -> None:
    walk_to(sender, "options")
    assert sender.options().status_code == 302
    r = sender.notification(subject="", body="Mijn eigen tekst")
    assert r.status_code == 422
    page = text_of(r)
    assert "Please enter a subject." in page and "Mijn eigen tekst" in page
    r = sender.notification(subject="Dossier\r\nBcc: x@evil.example")
    assert r.status_code == 422


def test_back_navigation_keeps_entries(sender: Sender) -> None:
    walk_to(sender, "options")
    sender.files([], message="Bewaard bericht", action="upload")
    assert "Bewaard bericht" in text_of(sender.get("/send/files"))
    assert "anna@gemeente.example" in text_of(sender.get("/send/recipients"))
    assert sender.person.phone in text_of(sender.get("/send/"))


def test_steps_cannot_be_skipped(sender: Sender) -> None:
    assert sender.get("/send/options").status_code == 302
    sender.personal()
    r = sender.get("/send/options")
    assert r.status_code == 302 and r.location.endswith("/send/verify")


def test_every_step_answers_a_refused_form_with_422(sender: Sender) -> None:
    """The same status for the same thing on every step: a form that was refused, shown again to correct."""
    evil = "Jan\r\nBcc: x@evil.example"
    assert sender.personal(name=evil).status_code == 422
    assert sender.personal(email="jan@zorg.example\r\nBcc: x@evil.example").status_code == 422
    assert sender.personal().status_code == 302
    wrong = "00000000" if sender.mailbox.code_for(sender.person.email) != "00000000" else "11111111"
    assert sender.verify(wrong).status_code == 422
    assert sender.verify().status_code == 302
    assert sender.recipients("geen-adres").status_code == 422
    assert sender.recipients("anna@gemeente.example").status_code == 302
    assert sender.files([], message="").status_code == 422
    assert sender.files([("a.txt", b"abc")]).status_code == 302
    assert sender.options(expires_on="2000-01-01").status_code == 422
    assert sender.options().status_code == 302
    assert sender.notification(subject="").status_code == 422

"""A refused post is answered with a redirect to its own page (post/redirect/get),
so the browser's history holds only page loads and Back never meets a
"Confirm form resubmission" page; the page shows the refusal once, with
everything typed."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from werkzeug.datastructures import MultiDict

from app import db
from app.models import Draft

from .test_wizard_validation import walk_to
from .walker import BASE, PASSWORD, Recipient, Sender, csrf_token, multipart, text_of

MESSAGE = "Vertrouwelijk: dossier 4711 " + "x" * 19_990  # over the 20,000 allowed


def _refused(sender: Sender, path: str, data: dict[str, str]):  # type: ignore[no-untyped-def]
    token = csrf_token(sender.get(path).get_data(as_text=True))
    answer = sender.client.post(path, base_url=BASE, data={"csrf_token": token, **data})
    assert answer.status_code == 303 and answer.location == path
    return answer


@pytest.mark.parametrize(
    ("step", "path", "data", "shown"),
    [
        ("personal", "/send/", {"name": "Jan", "phone": "call me", "email": "jan@zorg.example"}, "Please enter a phone number"),
        ("verify", "/send/verify", {"code": "00000000"}, "This code is not correct"),
        ("recipients", "/send/recipients", {"to": "anna@gemeente.example; kees@@gemeente"}, "“kees@@gemeente” is not a valid"),
        ("options", "/send/options", {"expires_on": "2001-01-01", "recipient_language": "en", "password_mode": "manual",
                                      "password": PASSWORD, "password_repeat": PASSWORD}, "cannot be in the past"),
    ],
)
def test_each_step_answers_a_refusal_with_its_own_page_shown_once(sender: Sender, step: str, path: str, data, shown: str) -> None:
    walk_to(sender, step)
    _refused(sender, path, data)
    page = sender.get(path)
    assert page.status_code == 422 and shown in text_of(page)
    # Shown once: a reload (or Back to it) is the plain page again.
    again = sender.get(path)
    assert again.status_code == 200 and shown not in text_of(again)


def test_a_refused_options_form_keeps_the_typed_password_sealed(sender: Sender, app) -> None:
    walk_to(sender, "options")
    _refused(sender, "/send/options", {"expires_on": "2001-01-01", "recipient_language": "en", "password_mode": "manual",
                                       "password": PASSWORD, "password_repeat": PASSWORD})
    # Between the post and the page, the draft holds it sealed, never readable.
    with app.app_context():
        sealed = db.session().scalar(select(Draft.refusal_ct))
    assert sealed and PASSWORD.encode() not in sealed and b"2001-01-01" not in sealed
    page = sender.get("/send/options").get_data(as_text=True)
    assert f'value="{PASSWORD}"' in page
    with app.app_context():
        assert db.session().scalar(select(Draft.refusal_ct)) is None


def test_a_long_confidential_message_comes_back_whole(sender: Sender) -> None:
    walk_to(sender, "files")
    body, content_type = multipart([("csrf_token", sender.upload_token()), ("message", MESSAGE), ("action", "next")])
    answer = sender.client.post("/send/files", base_url=BASE, data=body, content_type=content_type)
    assert answer.status_code == 303 and answer.location == "/send/files"
    page = sender.get("/send/files")
    assert page.status_code == 422 and "Please use at most 20000 characters." in text_of(page)
    assert MESSAGE in text_of(page)


def test_the_personal_step_keeps_no_more_than_a_person_types_in_the_cookie(sender: Sender) -> None:
    token = csrf_token(sender.get("/send/").get_data(as_text=True))
    answer = sender.client.post(
        "/send/", base_url=BASE, data={"csrf_token": token, "name": "J" * 50_000, "phone": "0592 123456", "email": "jan@zorg.example"}
    )
    assert answer.status_code == 303
    cookie = next(c for c in answer.headers.getlist("Set-Cookie") if "koerier=" in c)
    assert len(cookie) < 4000
    assert "Please use at most 100 characters." in text_of(sender.get("/send/"))


def test_the_download_page_keeps_the_id_but_never_the_password(sender: Sender, app) -> None:
    sent = sender.send()
    recipient = Recipient(app)
    typed = sent.access_id("anna@gemeente.example")
    token = csrf_token(recipient.get("/download/").get_data(as_text=True))
    answer = recipient.client.post(
        "/download/", base_url=BASE, data={"csrf_token": token, "transaction_id": typed, "password": "Verkeerd-1"}
    )
    assert answer.status_code == 303 and answer.location == "/download/"
    assert "Verkeerd-1" not in str(answer.headers)
    page = recipient.get("/download/")
    assert page.status_code == 403
    assert f'value="{typed}"' in page.get_data(as_text=True) and "Verkeerd-1" not in page.get_data(as_text=True)


def test_a_field_repeated_thousands_of_times_is_carried_once(sender: Sender, app) -> None:
    recipient = Recipient(app)
    token = csrf_token(recipient.get("/download/").get_data(as_text=True))
    answer = recipient.client.post(
        "/download/", base_url=BASE,
        data=MultiDict([("csrf_token", token), ("password", "x"), *[("transaction_id", "A" * 300)] * 2500]),
    )
    assert answer.status_code == 303
    cookie = next(c for c in answer.headers.getlist("Set-Cookie") if "koerier=" in c)
    assert len(cookie) < 4000

"""A recipient whose download session ended, or who typed something wrong,
is told what to do next and keeps their place."""

from __future__ import annotations

import html
import re
from datetime import timedelta

from sqlalchemy import update

from app import db
from app.clock import utcnow
from app.ids import group, new_access_id
from app.models import DownloadGrant

from .walker import PASSWORD, Recipient, Sender, text_of

ANNA = "anna@gemeente.example"


def _lapse_grants(app) -> None:  # type: ignore[no-untyped-def]
    with app.app_context():
        db.session().execute(update(DownloadGrant).values(expires_at=utcnow() - timedelta(seconds=1)))
        db.session().commit()


def _meta_refresh(page: str) -> str:
    return html.unescape(re.search(r'<meta http-equiv="refresh" content="0; url=([^"]+)">', page).group(1))


def test_a_download_after_the_session_ended_asks_again_and_then_continues(sender: Sender, app) -> None:
    sent = sender.send(files=[("verslag.txt", b"de inhoud")])
    recipient = Recipient(app)
    recipient.unlock(sent.access_id(ANNA), PASSWORD)
    link = recipient.file_links()["verslag.txt"]
    _lapse_grants(app)

    asked = recipient.get(link)
    assert asked.status_code == 302
    assert asked.location == "/download/?id=" + sent.access_id(ANNA)
    page = text_of(recipient.get(asked.location))
    assert "Your download session has ended" in page
    assert f'value="{sent.access_id(ANNA)}"' in page

    unlocked = recipient.post(
        "/download/", data={"csrf_token": re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1),
                            "transaction_id": sent.access_id(ANNA), "password": PASSWORD}
    )
    assert unlocked.status_code == 302 and unlocked.location.startswith("/download/transfer?get=")
    shown = text_of(recipient.get(unlocked.location))
    assert "Your download of “verslag.txt” starts now." in shown
    assert _meta_refresh(shown) == link
    assert recipient.get(link).get_data() == b"de inhoud"


def test_a_preview_or_download_all_after_the_session_ended_continues_there(make_app, mailbox) -> None:
    app = make_app({})
    sent = Sender(app, mailbox).send(files=[("scan.png", b"\x89PNG\r\n\x1a\n0000"), ("b.txt", b"b")])
    recipient = Recipient(app)
    recipient.unlock(sent.access_id(ANNA), PASSWORD)
    preview = recipient.file_links()["scan.png"] + "/preview"
    _lapse_grants(app)
    recipient.get(preview)
    assert recipient.unlock(sent.access_id(ANNA), PASSWORD).location == preview
    assert recipient.get(preview).status_code == 200

    _lapse_grants(app)
    recipient.get("/download/all")
    again = recipient.unlock(sent.access_id(ANNA), PASSWORD)
    assert again.location == "/download/transfer?get=all"
    assert _meta_refresh(text_of(recipient.get(again.location))) == "/download/all"


def test_what_was_asked_for_in_another_transfer_is_not_followed(sender: Sender, app) -> None:
    first = sender.send(files=[("a.txt", b"a")])
    second = sender.send(files=[("b.txt", b"b")])
    recipient = Recipient(app)
    recipient.unlock(first.access_id(ANNA), PASSWORD)
    link = recipient.file_links()["a.txt"]
    _lapse_grants(app)
    recipient.get(link)
    opened = recipient.unlock(second.access_id(ANNA), PASSWORD)
    page = text_of(recipient.get(opened.location))
    assert "starts now" not in page and 'http-equiv="refresh"' not in page


def test_a_wrong_password_says_how_many_tries_are_left(sender: Sender, app) -> None:
    sent = sender.send()
    recipient = Recipient(app)
    answers = [text_of(recipient.unlock(sent.access_id(ANNA), "Verkeerd-Wachtwoord-1")) for _ in range(5)]
    assert "You have 4 more attempts before this transaction ID is locked" in answers[0]
    assert "You have 1 more attempt before this transaction ID is locked" in answers[3]
    assert "Too many wrong attempts for this transaction ID. Please try again after" in answers[4]
    # An unknown ID counts down the same way: the count tells nothing.
    unknown = text_of(Recipient(app).unlock(group(new_access_id()), PASSWORD))
    assert "You have 4 more attempts" in unknown


def test_the_password_answer_points_to_the_link_for_transfers_without_one(make_app, mailbox) -> None:
    app = make_app({})
    sent = Sender(app, mailbox).send(password_mode="none")
    # The recipient types the ID from the mail and something as a password.
    page = text_of(Recipient(app).unlock(sent.access_id(ANNA), "iets"))
    assert "If the email says the transfer was sent without a password, open the link in it" in page


def test_choosing_no_password_shows_a_warning(sender: Sender) -> None:
    sender.personal()
    sender.verify()
    sender.recipients(ANNA)
    sender.files([("a.txt", b"a")])
    page = text_of(sender.get("/send/options"))
    assert 'aria-describedby="no-password-warning"' in page
    assert "Without a password, whoever has the notification mail" in page


def test_the_count_of_tries_left_is_the_typed_ids_own(sender: Sender, app) -> None:
    # The recipients of one transfer share its password's lockout; a count
    # that showed the shared one would tell their real IDs from unknown ones.
    sent = sender.send(to="anna@gemeente.example, kees@gemeente.example")
    for _ in range(2):
        Recipient(app).unlock(sent.access_id(ANNA), "Verkeerd-Wachtwoord-1")
    kees = text_of(Recipient(app).unlock(sent.access_id("kees@gemeente.example"), "Verkeerd-Wachtwoord-1"))
    unknown = text_of(Recipient(app).unlock(group(new_access_id()), "Verkeerd-Wachtwoord-1"))
    assert "You have 4 more attempts" in kees and "You have 4 more attempts" in unknown


def test_a_generated_password_opens_as_read_over_the_phone(make_app, mailbox) -> None:
    app = make_app({})
    sent = Sender(app, mailbox).send(password_mode="generate", password=None, password_repeat=None)
    password = sent.generated_password
    assert "-" in password
    loose = [password.replace("-", ""), password.replace("-", " ").upper(), "  " + password.replace("-", "‑") + " "]
    for typed in loose:
        assert Recipient(app).unlock(sent.access_id(ANNA), typed).status_code == 302, typed
    # Still a wrong password when it is one.
    assert Recipient(app).unlock(sent.access_id(ANNA), password[:-1] + ("a" if password[-1] != "a" else "b")).status_code == 403

"""A "Reply securely" link never drops an unfinished transfer unasked."""

from __future__ import annotations

import re

from sqlalchemy import func, select

from app import db
from app.models import Draft

from .walker import Sender, csrf_token, text_of

QUESTION = "You have an unfinished transfer in this browser."


def _reply_path(sender: Sender) -> str:
    mail = sender.send(to="anna@gemeente.example").notifications["anna@gemeente.example"]
    return re.search(r"https://portal\.example\.nl(/send/reply/\S+)", mail.text).group(1)


def _drafts(app) -> int:  # type: ignore[no-untyped-def]
    with app.app_context():
        return db.session().scalar(select(func.count()).select_from(Draft))


def _blobs(app) -> list:  # type: ignore[no-untyped-def]
    return [p for p in app.extensions["koerier"].store.root.rglob("*") if p.is_file()]


def test_a_reply_link_asks_before_discarding_an_unfinished_transfer(sender: Sender, app, mailbox) -> None:
    reply = _reply_path(sender)
    anna = Sender(app, mailbox)
    anna.person.name, anna.person.email = "Anna Jansen", "anna@gemeente.example"
    anna.personal()
    anna.verify()
    anna.recipients("piet@elders.example")
    anna.files([("eigen.pdf", b"%PDF her own")], action="upload")
    drafts_before, blobs_before = _drafts(app), len(_blobs(app))

    r = anna.get(reply)
    assert r.status_code == 200
    page = text_of(r)
    assert QUESTION in page and "Start the reply and discard the unfinished transfer" in page
    assert 'href="/send/options">Back to the unfinished transfer' in page  # where it goes on
    # Nothing was lost by looking: the draft and its file are still there.
    assert "eigen.pdf" in text_of(anna.get("/send/files"))
    # Without the page's token nothing happens.
    assert anna.post(reply, data={}).status_code == 400
    assert "eigen.pdf" in text_of(anna.get("/send/files"))

    confirmed = anna.post(reply, data={"csrf_token": csrf_token(r.get_data(as_text=True))})
    assert confirmed.status_code == 302 and confirmed.location.endswith("/send/")
    form = anna.get("/send/").get_data(as_text=True)
    assert 'value="anna@gemeente.example"' in form
    # The unfinished transfer is gone, with its encrypted file.
    assert _drafts(app) == drafts_before - 1 and len(_blobs(app)) == blobs_before - 1


def test_a_reply_link_shows_whom_it_answers_and_starts_only_when_confirmed(sender: Sender, app, mailbox) -> None:
    """Followed from anywhere, even another site, the link plants nothing; the post does."""
    reply = _reply_path(sender)
    anna = Sender(app, mailbox)
    r = anna.get(reply, headers={"Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 200
    page = text_of(r)
    assert "Your reply goes to Jan de Vries (jan@zorg.example)" in page and QUESTION not in page
    with anna.client.session_transaction(base_url="https://portal.example.nl") as session:
        assert "reply" not in session
    assert 'value="anna@gemeente.example"' not in anna.get("/send/").get_data(as_text=True)
    started = anna.post(reply, data={"csrf_token": csrf_token(r.get_data(as_text=True))})
    assert started.status_code == 302 and started.location.endswith("/send/")
    assert 'value="anna@gemeente.example"' in anna.get("/send/").get_data(as_text=True)

def test_a_reply_is_proposed_in_the_language_of_the_sender_it_answers(sender: Sender, app, mailbox) -> None:
    """A browser walk found a reply to a Dutch sender proposed in German: the
    language Jan had chosen for Anna, not his own. The reply goes to Jan."""
    sender.get("/lang/nl?next=/send/")
    mail = sender.send(to="anna@gemeente.example", recipient_language="de").notifications["anna@gemeente.example"]
    reply = re.search(r"https://portal\.example\.nl(/send/reply/\S+)", mail.text).group(1)
    anna = Sender(app, mailbox)
    anna.person.name, anna.person.email = "Anna Jansen", "anna@gemeente.example"
    page = anna.get(reply)
    assert anna.post(reply, data={"csrf_token": csrf_token(page.get_data(as_text=True))}).status_code == 302
    assert anna.personal().status_code == 302
    assert anna.verify().status_code == 302
    assert anna.files([("antwoord.pdf", b"%PDF her answer")]).status_code == 302
    options = anna.get("/send/options").get_data(as_text=True)
    assert re.findall(r'<option[^>]*\bselected\b[^>]*value="(\w+)"', options) == ["nl"]

"""The cap on concurrent Argon2id computations: past the wait, a clear
"busy" answer that keeps what was typed and counts no failed attempt."""

from __future__ import annotations

from sqlalchemy import select

from app import db
from app.models import AccessThrottle

from .walker import Recipient, Sender, text_of

PASSWORD = "Zonnebloem-Kade-1987!"
NO_WAIT = {"crypto": {"argon2_max_concurrent": 1, "argon2_wait_seconds": 0}}


def test_unlock_answers_busy_while_every_slot_is_taken(make_app, mailbox) -> None:
    app = make_app(NO_WAIT)
    sent = Sender(app, mailbox).send()
    access_id = sent.access_id("anna@gemeente.example")
    recipient = Recipient(app)
    with app.extensions["koerier"].argon2_gate.slot():
        busy = recipient.unlock(access_id, PASSWORD)
    assert busy.status_code == 503 and busy.headers["Retry-After"]
    assert "very busy" in text_of(busy)
    assert access_id in text_of(busy)  # the ID stays in the form
    with app.app_context():
        assert db.session().scalars(select(AccessThrottle)).all() == []  # not a failed attempt
    assert recipient.unlock(access_id, PASSWORD).location.endswith("/download/transfer")


def test_choosing_a_password_answers_busy_and_keeps_it(make_app, mailbox) -> None:
    app = make_app(NO_WAIT)
    sender = Sender(app, mailbox)
    sender.personal()
    sender.verify()
    sender.recipients("anna@gemeente.example")
    sender.files([("verslag.pdf", b"%PDF report")])
    with app.extensions["koerier"].argon2_gate.slot():
        busy = sender.options()
    assert busy.status_code == 503
    assert f'value="{PASSWORD}"' in busy.get_data(as_text=True)
    assert sender.options().status_code == 302

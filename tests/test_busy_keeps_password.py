"""When every Argon2 slot is taken, the download page answers "busy" and
keeps the typed password, as the README promises; a wrong password is never
echoed back."""

from __future__ import annotations

from .test_argon2_gate import NO_WAIT, PASSWORD
from .walker import Recipient, Sender


def test_the_busy_answer_keeps_the_typed_password_and_a_wrong_one_is_not_echoed(make_app, mailbox) -> None:
    app = make_app(NO_WAIT)
    access_id = Sender(app, mailbox).send().access_id("anna@gemeente.example")
    recipient = Recipient(app)
    with app.extensions["koerier"].argon2_gate.slot():
        busy = recipient.unlock(access_id, PASSWORD)
    assert busy.status_code == 503 and busy.headers["Cache-Control"] == "no-store"
    assert f'value="{PASSWORD}"' in busy.get_data(as_text=True)

    wrong = recipient.unlock(access_id, "Verkeerd-Wachtwoord-42")
    assert wrong.status_code == 403 and "Verkeerd-Wachtwoord-42" not in wrong.get_data(as_text=True)
    # The widget kept the password for that one answer only.
    assert recipient.unlock(access_id, PASSWORD).location.endswith("/download/transfer")

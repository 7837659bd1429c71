"""One full transaction with the production Argon2id parameters (t=3, 64 MiB, p=4)."""

from __future__ import annotations

from sqlalchemy import select

from app import db
from app.models import KeySlot

from .walker import Recipient, Sender


def test_real_argon2_parameters_end_to_end(make_app, mailbox) -> None:
    app = make_app({"crypto": {"argon2_time_cost": 3, "argon2_memory_kib": 65536, "argon2_parallelism": 4}})
    sender = Sender(app, mailbox)
    sent = sender.send()
    with app.app_context():
        slot = db.session().scalar(select(KeySlot))
        assert slot.kdf == {"name": "argon2id", "time_cost": 3, "memory_kib": 65536, "parallelism": 4}
    recipient = Recipient(app)
    assert recipient.unlock(sent.access_id("anna@gemeente.example"), "Verkeerd-Wachtwoord-1").status_code == 403
    assert recipient.unlock(sent.access_id("anna@gemeente.example"), "Zonnebloem-Kade-1987!").status_code == 302
    assert recipient.get(recipient.file_links()["verslag.pdf"]).data.startswith(b"%PDF")


def test_slots_keep_their_own_parameters(make_app, mailbox, tmp_path) -> None:
    """Raising the cost later leaves older transfers openable."""
    instance = tmp_path / "shared"
    sender = Sender(make_app(instance=instance), mailbox)
    sent = sender.send()
    stronger = make_app({"crypto": {"argon2_time_cost": 2, "argon2_memory_kib": 128}}, instance=instance)
    recipient = Recipient(stronger)
    assert recipient.unlock(sent.access_id("anna@gemeente.example"), "Zonnebloem-Kade-1987!").status_code == 302
    # The slot's own parameters gave the right key: the file decrypts to what was sent.
    assert recipient.get(recipient.file_links()["verslag.pdf"]).data == b"%PDF-1.4 test report\n"

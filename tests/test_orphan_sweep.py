"""The clean-up job's sweep of what no row names: only old things, never a
named blob, nothing that is not the portal's; on disk and in a bucket."""

from __future__ import annotations

from datetime import timedelta

from app import db, purge
from app.clock import utcnow

from . import blobs
from .walker import PASSWORD, Recipient, Sender

pytestmark = blobs.BOTH_STORES


def test_the_sweep_keeps_young_orphans_and_every_blob_a_row_names(sender: Sender, app) -> None:
    data = b"%PDF-1.4 report\n" * 100
    sent = sender.send(files=[("verslag.pdf", data)])
    [named] = blobs.names(app)
    store = app.extensions["koerier"].store
    # Ciphertext of an upload whose row was never committed (its request died).
    orphan = store.new_key()
    with store.create(orphan) as fh:
        fh.write(b"ciphertext of an upload whose row is not committed (yet)")
    # And in a bucket: a multipart upload and a tail left the same way, and
    # an object that is not the portal's at all.
    foreign = blobs.leave_orphans(app, store.new_key())
    stored = sorted(blobs.leftovers(app))

    def sweep(now):  # type: ignore[no-untyped-def]
        with app.app_context():
            return purge.run(lambda: db.new_session(app), app.extensions["koerier"], now).orphan_blobs_removed

    # Younger than a draft's lifetime: it may be an upload about to be committed.
    assert sweep(utcnow()) == 0 and sorted(blobs.leftovers(app)) == stored
    later = utcnow() + timedelta(hours=app.config["KOERIER"].transfer.draft_ttl_hours + 1)
    assert sweep(later) == len(stored) - 1 - len(foreign)
    assert sorted(blobs.leftovers(app)) == sorted([named, *foreign])
    recipient = Recipient(app)
    recipient.unlock(sent.access_id("anna@gemeente.example"), PASSWORD)
    assert recipient.get(recipient.file_links()["verslag.pdf"]).data == data

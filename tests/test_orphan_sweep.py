"""The clean-up job's sweep of blobs no row names: only old ones, never a named one."""

from __future__ import annotations

import os
from datetime import timedelta

from app import db, purge
from app.clock import utcnow

from .walker import PASSWORD, Recipient, Sender


def test_the_sweep_keeps_young_orphans_and_every_blob_a_row_names(sender: Sender, app) -> None:
    data = b"%PDF-1.4 report\n" * 100
    sent = sender.send(files=[("verslag.pdf", data)])
    store = app.extensions["koerier"].store
    [named] = [p for p in store.root.rglob("*") if p.is_file()]

    def orphan() -> "os.PathLike[str]":
        key = store.new_key()
        with store.create(key) as fh:
            fh.write(b"ciphertext of an upload whose row is not committed (yet)")
        return store.root / key[:2] / key

    young, old = orphan(), orphan()
    long_ago = (utcnow() - timedelta(hours=app.config["KOERIER"].transfer.draft_ttl_hours + 1)).timestamp()
    for path in (old, named):
        os.utime(path, (long_ago, long_ago))

    with app.app_context():
        report = purge.run(lambda: db.new_session(app), app.extensions["koerier"], utcnow())
    assert report.orphan_blobs_removed == 1
    assert not old.exists()
    # A young orphan may be an upload about to be committed.
    assert young.exists()
    assert named.exists()
    recipient = Recipient(app)
    recipient.unlock(sent.access_id("anna@gemeente.example"), PASSWORD)
    assert recipient.get(recipient.file_links()["verslag.pdf"]).data == data

"""A backup restored: the database from ``pg_dump``, the store and the secret
key, taken together (docs/DEPLOY.md), bring back a transfer made before it."""

from __future__ import annotations

import shutil
from pathlib import Path

from .pg import PostgresDatabase, PostgresServer
from .walker import PASSWORD, Recipient, Sender

CONTENT = b"%PDF-1.4 besluit van voor de back-up\n" * 4000


def test_a_restored_dump_still_opens_a_transfer_made_before_it(
    make_app, mailbox, postgres: PostgresServer, pg_database: PostgresDatabase, tmp_path: Path
) -> None:
    instance = tmp_path / "instance"
    app = make_app({"storage": {"database_url": pg_database.url}})
    access_id = Sender(app, mailbox).send(files=[("besluit.pdf", CONTENT)]).access_id("anna@gemeente.example")

    backup = tmp_path / "backup"
    backup.mkdir()
    (backup / "koerier.dump").write_bytes(pg_database.dump(custom=True))
    shutil.copytree(instance / "store", backup / "store")
    shutil.copy2(instance / "secret_key", backup / "secret_key")
    # The disaster: the database and the node are gone.
    postgres.drop_database(pg_database.name)

    # The restore, in the order docs/DEPLOY.md gives: database, store and key, then the portal.
    restored = postgres.create_database()
    try:
        postgres.restore(restored, (backup / "koerier.dump").read_bytes())
        new_node = tmp_path / "new-node"
        new_node.mkdir(mode=0o700)
        shutil.copytree(backup / "store", new_node / "store")
        shutil.copy2(backup / "secret_key", new_node / "secret_key")
        portal = make_app({"storage": {"database_url": postgres.url(restored)}}, instance=new_node)
        assert portal.test_client().get("/readyz").json == {"database": "ok", "migrations": "ok", "storage": "ok"}
        recipient = Recipient(portal)
        assert recipient.unlock(access_id, PASSWORD).status_code == 302
        assert recipient.get(recipient.file_links()["besluit.pdf"]).data == CONTENT
    finally:
        postgres.drop_database(restored)

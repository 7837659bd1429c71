"""The schema belongs to the migrations (app/migrations): they agree with the
models, upgrade a database with its transfers in it, and workers that start
together on an empty database do not race to make it."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
import requests
import tomli_w
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.exc import DatabaseError

from app import audit, db, purge, schema
from app.clock import utcnow
from app.db import Base
from app.schema import SchemaError

from .conftest import Setup, base_config
from .live import LiveServer
from .walker import PASSWORD, Recipient, Sender

ROOT = Path(__file__).resolve().parent.parent
CONTENT = b"%PDF-1.4 jaarverslag van voor de upgrade\n" * 2000


def _flask(instance: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``flask --app wsgi ...`` as an operator runs it."""
    env = {"PATH": "/usr/bin:/bin", "KOERIER_INSTANCE_PATH": str(instance)}
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", *args], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=120,
    )


def _revision(app) -> str | None:  # type: ignore[no-untyped-def]
    with app.extensions["koerier.engine"].connect() as conn:
        return schema.current(conn)


def test_models_and_migrations_agree(app) -> None:
    with app.extensions["koerier.engine"].connect() as conn:
        assert schema.current(conn) == schema.head()
        context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
        assert compare_metadata(context, Base.metadata) == []


def test_an_upgrade_keeps_a_transfer_downloadable(make_app, mailbox, tmp_path: Path, setup: Setup) -> None:
    """A transfer made at the first revision downloads after ``flask db upgrade``;
    until then the app refuses to start and names the command."""
    instance = tmp_path / "instance"
    instance.mkdir()
    # `flask db` reads the instance's file alone.
    storage = {"database_url": setup.database_url, "auto_upgrade": "never"}
    (instance / "config.toml").write_text(tomli_w.dumps({"storage": storage}))
    app = make_app()
    sent = Sender(app, mailbox).send(files=[("jaarverslag.pdf", CONTENT)])
    access_id = sent.access_id("anna@gemeente.example")

    downgraded = _flask(instance, "db", "downgrade", "0001")
    assert downgraded.returncode == 0, downgraded.stderr
    assert _revision(app) == "0001"

    with pytest.raises(SchemaError, match="at schema revision 0001.*run `flask --app wsgi db upgrade`"):
        make_app()
    refused = _flask(instance, "routes")
    assert refused.returncode == 3
    assert "Database schema: the database is at schema revision 0001" in refused.stderr
    assert "flask --app wsgi db upgrade" in refused.stderr

    upgraded = _flask(instance, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    recipient = Recipient(make_app())
    assert recipient.unlock(access_id, PASSWORD).status_code == 302
    assert recipient.get(recipient.file_links()["jaarverslag.pdf"]).get_data() == CONTENT


@pytest.mark.setup("embedded")  # a shared database waits for the operator's upgrade (above)
def test_the_embedded_database_upgrades_itself(make_app, tmp_path: Path) -> None:
    instance = tmp_path / "instance"
    make_app()
    assert _flask(instance, "db", "downgrade", "0001").returncode == 0
    assert _revision(make_app()) == schema.head()


def test_the_audit_trails_term_downgrades_to_a_trail_nothing_deletes(make_app, tmp_path: Path, setup: Setup) -> None:
    instance = tmp_path / "instance"
    instance.mkdir()
    storage = {"database_url": setup.database_url, "auto_upgrade": "never"}
    (instance / "config.toml").write_text(tomli_w.dumps({"storage": storage}))
    app = make_app()
    with db.new_session(app) as s:
        audit.record(s, "file_downloaded", actor="anna@gemeente.example", now=utcnow() - timedelta(days=1000))
        s.commit()

    before = schema.scripts().get_revision("0005").down_revision
    downgraded = _flask(instance, "db", "downgrade", before)
    assert downgraded.returncode == 0, downgraded.stderr
    engine = app.extensions["koerier.engine"]
    with engine.connect() as conn:
        assert "audit_purge" not in inspect(conn).get_table_names()
        with pytest.raises(DatabaseError, match="append-only"):
            conn.execute(text("DELETE FROM event"))

    upgraded = _flask(instance, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    app = make_app()
    with app.app_context():
        report = purge.run(lambda: db.new_session(app), app.extensions["koerier"])
    assert report.events_removed == 1 and report.failures == 0


def test_a_database_from_before_revisions_is_not_taken_for_empty(make_app, tmp_path: Path) -> None:
    app = make_app()
    with app.extensions["koerier.engine"].begin() as conn:
        conn.execute(text("DROP TABLE alembic_version"))
    with pytest.raises(SchemaError, match="no schema revision.*flask --app wsgi db stamp 0001"):
        make_app()


def test_a_database_a_newer_version_upgraded_stops_start_up(make_app) -> None:
    app = make_app()
    with app.extensions["koerier.engine"].begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(SchemaError, match="revision 9999, which this version of Koerier does not know"):
        make_app()


def test_workers_starting_together_on_an_empty_database_make_it_once(
    make_live, setup: Setup, request: pytest.FixtureRequest
) -> None:
    # The embedded setup's SQLite file is not there yet; PostgreSQL's test database holds the schema already.
    empty = {"storage": {"database_url": request.getfixturevalue("empty_pg_database").url}} if setup.database_url else {}
    app, server = make_live(empty, workers=2)
    assert len(server.worker_pids()) == 2
    assert requests.get(server.url + "/", timeout=30).status_code == 200
    assert _revision(app) == schema.head()
    log = (server.instance / "gunicorn.log").read_text()
    assert "Traceback" not in log
    # Both workers ran the check; the one that waited for the lock found nothing left to do.
    assert log.count("Running upgrade  -> 0001") == 1


def test_a_worker_waits_while_another_writes_the_fresh_embedded_database(make_app, tmp_path: Path) -> None:
    """A fresh SQLite file has a rollback journal, and switching it to WAL
    needs it to itself: SQLite refused at once, without waiting, while the
    first worker held its write lock making the schema, and the refused
    worker stopped gunicorn's first start."""
    instance = tmp_path / "instance"
    instance.mkdir()
    first = sqlite3.connect(instance / "koerier.sqlite3", isolation_level=None, check_same_thread=False)
    first.execute("BEGIN IMMEDIATE")
    first.execute("CREATE TABLE being_made (id INTEGER)")
    done = threading.Timer(0.3, first.execute, ["ROLLBACK"])
    done.start()
    try:
        app = make_app({"storage": {"database_url": ""}})
    finally:
        done.join()
        first.close()
    assert _revision(app) == schema.head()
    with app.extensions["koerier.engine"].connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"


def test_a_worker_that_meets_a_long_write_lock_at_start_is_started_again(tmp_path: Path, mailbox) -> None:
    """A worker whose start found the embedded database locked for longer
    than its busy wait (another process writing for long) exited as if the
    configuration were wrong, and gunicorn stopped the whole server. A lock
    passes: the worker is started again, and the server stays."""
    instance = tmp_path / "live"
    instance.mkdir()
    (instance / "config.toml").write_text(tomli_w.dumps(base_config(mailbox, Setup("embedded"))))
    writer = sqlite3.connect(instance / "koerier.sqlite3", isolation_level=None, check_same_thread=False)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("CREATE TABLE being_written (id INTEGER)")
    log = instance / "gunicorn.log"
    locked = "Database: storage.database_url: database is locked"

    def release_once_a_worker_gave_up() -> None:
        # However slowly the worker boots: the lock outlasts its busy wait.
        deadline = time.monotonic() + 120
        while not (log.exists() and locked in log.read_text()) and time.monotonic() < deadline:
            time.sleep(0.1)
        writer.execute("ROLLBACK")

    done = threading.Thread(target=release_once_a_worker_gave_up)
    done.start()
    try:
        server = LiveServer(instance, boot_seconds=180)
    finally:
        done.join()
        writer.close()
    try:
        assert requests.get(server.url + "/", timeout=30).status_code == 200
        assert locked in server.log_tail(100_000)
    finally:
        server.stop()

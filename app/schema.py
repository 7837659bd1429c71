"""The database schema belongs to the Alembic revisions in app/migrations.

``flask --app wsgi db upgrade`` (Flask-Migrate) creates or upgrades a
database. At start-up the app checks that the database is at this version's
revision: an empty one is created, one that is behind is upgraded only where
``storage.auto_upgrade`` allows it (the embedded SQLite file, by default) and
otherwise stops start-up with a message naming the command, since upgrading a
shared database is the operator's step, with a backup at hand.

The migrations live inside the ``app`` package, so an installed (not
editable) copy finds them too.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click
from alembic import command
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import Flask
from flask.cli import ScriptInfo
from flask_migrate import Migrate
from sqlalchemy import Connection, Engine, event, inspect, text

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
UPGRADE_COMMAND = "flask --app wsgi db upgrade"
STAMP_FIRST_COMMAND = "flask --app wsgi db stamp 0001"
# Any constant: names the PostgreSQL advisory lock that serialises upgrades.
LOCK_KEY = 0x6B6F6572

log = logging.getLogger(__name__)
# SQLite ALTERs little in place; batch mode copies a table to change it.
migrate = Migrate(directory=str(MIGRATIONS), render_as_batch=True, compare_type=True)


class SchemaError(RuntimeError):
    """The database is not at this version's schema and start-up must stop."""


def init_app(app: Flask, engine: Engine, auto_upgrade: bool) -> None:
    """Register ``flask db`` and bring the schema to this version's head, or refuse."""
    app.extensions["koerier.engine"] = engine
    migrate.init_app(app)
    if _running_db_command():
        # `flask db upgrade`, `current`, `stamp`: the command itself deals
        # with the schema, which must not stop the app that carries it.
        return
    ensure_current(app, engine, auto_upgrade)


def scripts() -> ScriptDirectory:
    return ScriptDirectory(str(MIGRATIONS))


def head() -> str:
    return scripts().get_current_head() or ""


def current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def ensure_current(app: Flask, engine: Engine, auto_upgrade: bool) -> None:
    wanted = head()
    with engine.connect() as conn:
        revision = current(conn)
        tables = inspect(conn).get_table_names()
    if revision == wanted:
        return
    if revision is None and tables:
        # Made by create_all before the schema had revisions: the tables of
        # the first revision, if it was the last Koerier before them.
        raise SchemaError(
            "the database has tables but no schema revision: it was made by Koerier before schema revisions. "
            f"Back it up; if that was the last version before them, run `{STAMP_FIRST_COMMAND}`, "
            f"then `{UPGRADE_COMMAND}`"
        )
    if revision is not None and revision not in {script.revision for script in scripts().walk_revisions()}:
        raise SchemaError(
            f"the database is at schema revision {revision}, which this version of Koerier does not know: "
            "a newer version upgraded it; start that version again, or restore a backup from before"
        )
    # An empty database has nothing to lose: every worker may create it, and
    # the lock in upgrade() lets one do it while the others wait.
    if revision is not None and not auto_upgrade:
        raise SchemaError(
            f"the database is at schema revision {revision}, this version of Koerier needs {wanted}: "
            f"back it up, run `{UPGRADE_COMMAND}` once, then start again "
            "(or set storage.auto_upgrade)"
        )
    log.info("upgrading the database schema from %s to %s", revision or "nothing", wanted)
    upgrade(app)


def upgrade(app: Flask) -> None:
    """What ``flask db upgrade`` does, under the same lock (see migrations/env.py)."""
    with app.app_context():
        command.upgrade(migrate.get_config(), "head")


@contextmanager
def locked(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction that no other process's upgrade runs beside.

    Workers of a fresh deployment start at the same moment. PostgreSQL takes
    an advisory lock that the transaction holds; SQLite starts the
    transaction with BEGIN IMMEDIATE, which takes the database's write lock
    at once. The one that waited then finds the schema made.
    """
    if engine.dialect.name == "sqlite":
        engine = _immediate_engine(engine)
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
            yield conn
    finally:
        if engine.dialect.name == "sqlite":
            engine.dispose()


def _immediate_engine(engine: Engine) -> Engine:
    """An engine on the same SQLite file whose transactions begin IMMEDIATE.

    Python's sqlite3 opens a transaction only before data changes, so DDL
    would run outside it; the driver is told to leave transactions alone
    and SQLAlchemy starts them itself (the recipe in SQLAlchemy's SQLite docs).
    """
    from .db import make_engine

    immediate = make_engine(engine.url)

    @event.listens_for(immediate, "connect")
    def _driver_leaves_transactions(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        dbapi_conn.isolation_level = None

    @event.listens_for(immediate, "begin")
    def _begin_immediate(conn):  # type: ignore[no-untyped-def]
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return immediate


def _running_db_command() -> bool:
    """Whether the Flask CLI is loading the app for a ``flask db`` command."""
    ctx = click.get_current_context(silent=True)
    if ctx is None or ctx.find_object(ScriptInfo) is None:
        return False
    args = iter(sys.argv[1:])
    for arg in args:
        if arg in ("-A", "--app", "-e", "--env-file"):
            next(args, None)
        elif not arg.startswith("-"):
            return arg == migrate.command
    return False

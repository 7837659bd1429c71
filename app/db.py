"""Engine and per-request session.

One place commits: the request boundary (see ``init_app``). Services receive
a ``Session`` and never commit, so a failure anywhere in a request rolls the
whole request back and a half-written transaction is never visible.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from flask import Flask, Response, g
from sqlalchemy import URL, DateTime, Engine, create_engine, event, make_url, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from . import private_files, schema

log = logging.getLogger(__name__)
# How long a SQLite connection waits for another's write lock.
SQLITE_BUSY_TIMEOUT_MS = 10_000


class Base(DeclarativeBase):
    pass


class UTCDateTime(TypeDecorator[datetime]):
    """Stores naive UTC, returns aware UTC (SQLite keeps no time zone)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        return None if value is None else value.replace(tzinfo=timezone.utc)


def make_engine(url: str | URL, durable: bool = True) -> Engine:
    """``durable=False``: commits return before they are on disk (see
    ``init_app``); a crash may lose the last of them, never corrupt them."""
    # A pooled connection to a server is tested before use: after a database
    # restart or fail-over the first request gets a new connection, not an
    # error. A SQLite file has no server to lose, and the test would cost a
    # statement at every session an upload chunk opens.
    engine = create_engine(url, pool_pre_ping=make_url(url).get_backend_name() != "sqlite")
    if not durable and engine.dialect.name == "postgresql":

        @event.listens_for(engine, "connect")
        def _commits_return_early(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            # Set in the session, beside whatever options the URL gives (the
            # driver's "options" parameter would replace those).
            with dbapi_conn.cursor() as cur:
                cur.execute("SET synchronous_commit TO off")
            dbapi_conn.commit()

    if engine.dialect.name == "sqlite":
        _private_sqlite_files(engine.url.database)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            # WAL lets downloads read while a commit writes; foreign keys are
            # off by default in SQLite and our cascades depend on them.
            _journal_in_wal(cur)
            cur.execute("PRAGMA foreign_keys=ON")
            # Deleted rows (expired transfers' names and addresses) are
            # overwritten with zeros instead of lingering in free pages.
            cur.execute("PRAGMA secure_delete=ON")
            # In WAL mode NORMAL syncs at checkpoints, not at each commit;
            # any later FULL commit syncs the log with these commits in it.
            cur.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            cur.close()

    return engine


def _journal_in_wal(cur: sqlite3.Cursor) -> None:
    """Switch the database to WAL, waiting while another connection writes.

    A fresh database file starts with a rollback journal, and the switch
    needs it to itself. SQLite answers "locked" at once, without its busy
    wait, while another connection holds the write lock: so the workers of a
    first start, one of them creating the schema, would stop the server.
    Once the file is in WAL (it stays so) this returns at the first try.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _private_sqlite_files(database: str | None) -> None:
    """The database file made 0600 before SQLite opens it.

    SQLite gives the -wal and -shm files it creates the mode of the database
    file, so all three stay private; files an older version made are
    tightened.
    """
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    if not path.exists():
        # Not exclusive: a worker starting at the same moment may have made it.
        private_files.create(path, exclusive=False).close()
    for suffix in ("", "-wal", "-shm", "-journal"):
        private_files.tighten(path.with_name(path.name + suffix))


def init_app(app: Flask, url: str, auto_upgrade: bool) -> None:
    engine = make_engine(url)
    from . import models  # noqa: F401  (registers the tables)

    schema.init_app(app, engine, auto_upgrade)
    app.extensions["koerier.sessionmaker"] = sessionmaker(engine, expire_on_commit=False)
    # For rows that only coordinate running requests and expire on their own
    # (upload slots and space claims; not draft seats, whose adoption may
    # discard a sender's old drafts): a request commits several
    # of them, and waiting for each to reach the disk cost an upload chunk
    # more than its bytes did. What a power cut loses of them is at worst a
    # slot counted free again.
    app.extensions["koerier.ephemeral_engine"] = ephemeral = make_engine(url, durable=False)
    app.extensions["koerier.ephemeral_sessionmaker"] = sessionmaker(ephemeral, expire_on_commit=False)

    @app.after_request
    def _commit(response: Response) -> Response:
        # Flask runs after_request for its 500 page too; a crash must never
        # commit what the failed request had written so far.
        db = g.pop("db_session", None)
        if db is not None:
            try:
                if response.status_code < 500:
                    db.commit()
                else:
                    db.rollback()
            except OperationalError as exc:
                # The database went away, or stayed locked, at the last
                # moment: nothing of the request stays, and the visitor is
                # answered as when it happens in the view (app/errors.py).
                db.rollback()
                return app.make_response(app.handle_user_exception(exc))
            finally:
                db.close()
        return response

    @app.teardown_request
    def _rollback(_exc: BaseException | None) -> None:
        db = g.pop("db_session", None)
        if db is not None:
            db.rollback()
            db.close()


def upsert(db: Session, model: type[Base], values: dict[str, Any], update: dict[str, Any], where: Any = None) -> Any:
    """``INSERT ... ON CONFLICT (primary key) DO UPDATE``: one atomic statement.

    For counters bumped by parallel requests: there is no moment between
    "is there a row" and "write it" for another worker to slip into. Add
    ``.returning(...)`` to read the result; a row the ``where`` refused to
    update returns nothing.
    """
    keys = [column.name for column in model.__table__.primary_key]
    return _insert(db, model).values(**values).on_conflict_do_update(index_elements=keys, set_=update, where=where)


def _insert(db: Session, model: type[Base]) -> Any:
    """The dialect's INSERT, which knows ON CONFLICT (both engines have it)."""
    return (postgresql if db.get_bind().dialect.name == "postgresql" else sqlite).insert(model)


def after_commit(db: Session, action: Callable[[], None]) -> None:
    """Run ``action`` once the session's transaction has committed.

    For side effects outside the database (deleting blobs) that must not
    happen when the transaction rolls back.
    """
    db.info.setdefault("after_commit", []).append(action)


@event.listens_for(Session, "after_commit")
def _run_after_commit(db: Session) -> None:
    for action in db.info.pop("after_commit", []):
        try:
            action()
        except Exception:  # noqa: BLE001  (the commit stands; log and go on)
            log.exception("post-commit action failed")


@event.listens_for(Session, "after_rollback")
def _drop_after_commit(db: Session) -> None:
    db.info.pop("after_commit", None)


def insert_new(db: Session, model: type[Base], **values: object) -> bool:
    """Insert a row unless one with the same unique key exists; True if it was new.

    One statement (INSERT ... ON CONFLICT DO NOTHING), so requests racing to
    record the same thing neither fail nor record it twice.
    """
    # RETURNING, not rowcount, which drivers do not report for every INSERT.
    inserted = db.execute(
        _insert(db, model).values(**values).on_conflict_do_nothing().returning(*model.__table__.primary_key)
    )
    return inserted.first() is not None


def compact_deleted(db: Session) -> None:
    """Let what was deleted leave the database files where the engine allows it.

    SQLite keeps old page versions in its WAL until a checkpoint; this one
    copies them into the main file (where secure_delete has zeroed the
    deleted rows) and truncates the WAL. Best effort: a reader that is busy
    right now only postpones it. PostgreSQL keeps dead tuples until vacuum
    and reuse, and WAL segments until they are recycled; docs/FORMAT.md says
    why that holds no key.
    """
    if db.get_bind().dialect.name == "sqlite":
        db.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))


def session() -> Session:
    """The session of the current request (or app context, for the CLI)."""
    from flask import current_app

    if "db_session" not in g:
        g.db_session = current_app.extensions["koerier.sessionmaker"]()
    return g.db_session


def new_session(app: Flask) -> Session:
    """A session outside any request, for the CLI, the scheduler and tests."""
    return app.extensions["koerier.sessionmaker"]()


def dispose(app: Flask) -> None:
    """Close every pooled connection of ``app``'s engines."""
    for name in ("koerier.sessionmaker", "koerier.ephemeral_sessionmaker"):
        with app.extensions[name]() as db:
            db.get_bind().dispose()


def failure_cause(exc: BaseException) -> str:
    """What a database error says happened, for the log: the driver's first
    line, without the statement and parameters SQLAlchemy adds (which may
    hold addresses and tokens)."""
    cause = getattr(exc, "orig", None) or exc
    return (str(cause).strip().splitlines() or [type(cause).__name__])[0]

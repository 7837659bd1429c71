"""Engine and per-request session.

One place commits: the request boundary (see ``init_app``). Services receive
a ``Session`` and never commit, so a failure anywhere in a request rolls the
whole request back and a half-written transaction is never visible.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from flask import Flask, Response, g
from sqlalchemy import DateTime, Engine, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DatabaseError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator


log = logging.getLogger(__name__)


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


def make_engine(url: str) -> Engine:
    engine = create_engine(url)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            # WAL lets downloads read while a commit writes; foreign keys are
            # off by default in SQLite and our cascades depend on them.
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=10000")
            cur.close()

    return engine


# Any constant: names the advisory lock that serialises schema creation.
SCHEMA_LOCK = 0x6B6F6572


def create_schema(engine: Engine, attempts: int = 5) -> None:
    """Create missing tables (and their triggers).

    The workers of a fresh deployment boot at the same moment and race to
    create the same tables. PostgreSQL creates them in one transaction under
    an advisory lock, so the others wait and then find them made; on SQLite
    the loser of a race finds them made, and checking again sees them.
    """
    for attempt in range(1, attempts + 1):
        try:
            with engine.begin() as conn:
                if conn.dialect.name == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK})
                Base.metadata.create_all(conn)
            return
        except DatabaseError:
            if attempt == attempts:
                raise
            log.info("the schema was being created by another process; checking again")
            time.sleep(0.2 * attempt)


def init_app(app: Flask, url: str) -> None:
    engine = make_engine(url)
    from . import models  # noqa: F401  (registers the tables)

    create_schema(engine)
    app.extensions["koerier.sessionmaker"] = sessionmaker(engine, expire_on_commit=False)

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
    dialect = postgresql if db.get_bind().dialect.name == "postgresql" else sqlite
    keys = [column.name for column in model.__table__.primary_key]
    return dialect.insert(model).values(**values).on_conflict_do_update(index_elements=keys, set_=update, where=where)


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


def session() -> Session:
    """The session of the current request (or app context, for the CLI)."""
    from flask import current_app

    if "db_session" not in g:
        g.db_session = current_app.extensions["koerier.sessionmaker"]()
    return g.db_session


def new_session(app: Flask) -> Session:
    """A session outside any request, for the CLI, the scheduler and tests."""
    return app.extensions["koerier.sessionmaker"]()

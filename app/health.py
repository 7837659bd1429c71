"""Probes for a load balancer or an orchestrator.

``/healthz``: the process answers (liveness; touches nothing else, so a
database outage does not get healthy workers restarted). ``/readyz``: this
node can serve: the database answers, its schema is at this version's
revision, and the blob store takes a write; with scanning on, the virus
scanner answers PING too. 503 names the part that failed;
the reason, which may name a setting, a path or a host, goes to the log,
never into the answer, which says nothing about versions or the setup either.

Both are plain GETs: no session, no form, no cookie is read or set, and
neither the CSRF nor the origin checks (app/web.py) apply to a GET, so a
probe from any address gets its answer.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Flask, Response, current_app, jsonify
from sqlalchemy import Connection, inspect, text

from . import scanning, schema
from .db import failure_cause
from .web import portal

log = logging.getLogger(__name__)
bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    return Response("ok\n", mimetype="text/plain")


@bp.get("/readyz")
def readyz() -> Response:
    parts = {**_database(), "storage": _storage()}
    failed = any(state != "ok" for state in parts.values())
    config = portal().settings.scan
    if config.backend != "off":
        parts["scanner"] = _scanner()
        # With on_unavailable = "accept" the node still takes every upload
        # (unscanned, audited): the scanner's state is reported, not fatal.
        failed = failed or (parts["scanner"] != "ok" and config.on_unavailable == "refuse")
    response = jsonify(parts)
    if failed:
        response.status_code = 503
    return response


def _database() -> dict[str, str]:
    engine = current_app.extensions["koerier.engine"]
    try:
        with engine.connect() as conn:
            revisions = _revisions(conn)
    except Exception as exc:  # noqa: BLE001  (whatever the driver raises, the database is not there)
        log.warning("not ready: the database (storage.database_url) does not answer: %s", failure_cause(exc))
        return {"database": "unreachable", "migrations": "unknown"}
    head, known = current_app.extensions["koerier.schema_revisions"]
    if revisions == {head}:
        return {"database": "ok", "migrations": "ok"}
    log.warning(
        "not ready: the database is at schema revision %s, this version needs %s; run `%s`",
        ", ".join(sorted(revisions)) or "none", head, schema.UPGRADE_COMMAND,
    )
    return {"database": "ok", "migrations": "behind" if revisions <= known else "ahead"}


def _revisions(conn: Connection) -> set[str]:
    """The database's schema revisions, read from Alembic's table without
    Alembic, which would log two lines at every probe."""
    if not inspect(conn).has_table("alembic_version"):
        return set()
    return set(conn.scalars(text("SELECT version_num FROM alembic_version")))


def _storage() -> str:
    try:
        portal().store.check()
    except Exception as exc:  # noqa: BLE001  (each store raises its own kind; any means it cannot take a blob)
        log.warning("not ready: the blob store fails: %s", failure_cause(exc))
        return "failed"
    return "ok"


def _scanner() -> str:
    try:
        scanning.Clamd(portal().settings.scan).ping()
    except scanning.ScannerUnavailable as exc:
        log.warning("not ready: the virus scanner does not answer: %s", exc)
        return "unreachable"
    return "ok"


def init_app(app: Flask) -> None:
    # Read once: the revisions on disk are those of the code that runs.
    app.extensions["koerier.schema_revisions"] = (
        schema.head(), {script.revision for script in schema.scripts().walk_revisions()},
    )
    app.register_blueprint(bp)

"""Liveness and readiness probes, as a load balancer sends them."""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import text

READY = {"database": "ok", "migrations": "ok", "storage": "ok"}
# A load balancer probes a node by its own address, from its own, with no cookie.
PROBE = {"base_url": "http://10.0.0.7:8000", "environ_base": {"REMOTE_ADDR": "10.0.0.2"}}


def test_probes_answer_a_load_balancer(make_app) -> None:
    # Behind a proxy, with the portal's address elsewhere: neither matters to a probe.
    app = make_app({"site": {"trusted_proxies": 1}})
    client = app.test_client()
    alive = client.get("/healthz", **PROBE)
    assert alive.status_code == 200 and alive.get_data(as_text=True) == "ok\n"
    ready = client.get("/readyz", **PROBE)
    assert ready.status_code == 200 and ready.json == READY
    assert client.head("/readyz", **PROBE).status_code == 200
    for answer in (alive, ready):
        assert "Set-Cookie" not in answer.headers


@contextmanager
def _read_only(folder: Path) -> Iterator[None]:
    """``folder`` made unwritable, even for root: a read-only file system mounted over it."""
    if os.geteuid() != 0:
        folder.chmod(0o500)
        try:
            yield
        finally:
            folder.chmod(0o700)
        return
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)], capture_output=True)
    if done.returncode:
        pytest.fail(f"cannot mount a read-only file system here ({done.stderr.decode().strip()})", pytrace=False)
    try:
        yield
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_readiness_names_the_storage_when_the_store_takes_no_writes(make_app, caplog) -> None:
    app = make_app()
    store = app.extensions["koerier"].store.root
    client = app.test_client()
    with _read_only(store):
        answer = client.get("/readyz")
    assert answer.status_code == 503
    assert answer.json == {"database": "ok", "migrations": "ok", "storage": "failed"}
    # The operator's log names the setting; the answer does not name the folder.
    [reason] = [r.getMessage() for r in caplog.records if r.name == "app.health"]
    assert "storage.blob_dir" in reason and str(store) in reason
    assert str(store) not in answer.get_data(as_text=True)
    assert client.get("/readyz").json == READY
    assert not [p for p in store.iterdir() if p.name.startswith(".probe")]


@pytest.mark.parametrize(("revision", "state"), [("0001", "behind"), ("9999", "ahead")])
def test_readiness_names_the_migrations_when_the_schema_is_not_this_versions(
    make_app, revision: str, state: str, caplog
) -> None:
    app = make_app()
    # As `flask db stamp` would leave it: an older revision (or a newer version's).
    with app.extensions["koerier.engine"].begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = :revision"), {"revision": revision})
    answer = app.test_client().get("/readyz")
    assert answer.status_code == 503
    assert answer.json == {"database": "ok", "migrations": state, "storage": "ok"}
    assert revision not in answer.get_data(as_text=True)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name == "app.health"]
    assert any("flask --app wsgi db upgrade" in message for message in warnings)

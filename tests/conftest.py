from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from flask import Flask

from app import create_app, db

from .live import LiveServer
from .mailbox import Mailbox
from .pg import INSTALL_HINT, PostgresDatabase, PostgresServer, find_bindir
from .seaweed import INSTALL_HINT as WEED_INSTALL_HINT
from .seaweed import SeaweedServer, find_weed
from .walker import Sender

# Cheap Argon2 for speed; tests/test_production_params.py uses the real ones.
FAST_CRYPTO = {"argon2_time_cost": 1, "argon2_memory_kib": 64, "argon2_parallelism": 1}


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``extra`` over ``base``; a key set to None is left out (the built-in default applies)."""
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


@pytest.fixture(scope="session")
def mailbox() -> Iterator[Mailbox]:
    box = Mailbox()
    box.start()
    yield box
    box.stop()


def base_config(mailbox: Mailbox) -> dict[str, Any]:
    return {
        "site": {"base_url": "https://portal.example.nl", "name": "Gemeente Voorbeeld"},
        "mail": {"backend": "smtp", "smtp_host": "127.0.0.1", "smtp_port": mailbox.port, "from_address": "noreply@portal.example.nl"},
        "crypto": FAST_CRYPTO,
        # Tests run the job themselves, with an injected clock.
        "retention": {"scheduler": False},
    }


def _close_databases(apps: list[Flask]) -> None:
    """Let go of pooled connections, so a test's PostgreSQL database can be dropped cleanly."""
    for app in apps:
        with db.new_session(app) as session:
            session.get_bind().dispose()


@pytest.fixture(scope="session")
def seaweed() -> Iterator[SeaweedServer]:
    """One SeaweedFS server (an S3 store) for the whole session, started on first use."""
    weed = find_weed()
    if weed is None:
        pytest.fail(WEED_INSTALL_HINT, pytrace=False)
    server = SeaweedServer(weed).start()
    yield server
    server.stop()


@pytest.fixture
def s3_bucket(seaweed: SeaweedServer) -> Iterator[str]:
    """A fresh, empty bucket for this test."""
    name = seaweed.create_bucket()
    yield name
    seaweed.delete_bucket(name)


@pytest.fixture
def blob_backend(request: pytest.FixtureRequest) -> str:
    """Where the test's portals keep their blobs: "local", unless the test is
    parametrized with ``blob_backend`` indirectly (tests/blobs.py, BOTH_STORES)."""
    return getattr(request, "param", "local")


@pytest.fixture
def store_config(blob_backend: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    """The configuration that puts a portal's blobs where ``blob_backend`` says."""
    if blob_backend == "local":
        return {}
    seaweed: SeaweedServer = request.getfixturevalue("seaweed")
    return {"storage": seaweed.config(request.getfixturevalue("s3_bucket"))}


@pytest.fixture
def make_app(
    tmp_path: Path, mailbox: Mailbox, monkeypatch: pytest.MonkeyPatch, store_config: dict[str, Any]
) -> Iterator[Callable[..., Flask]]:
    monkeypatch.delenv("KOERIER_CONFIG", raising=False)
    monkeypatch.delenv("KOERIER_SECRET_KEY", raising=False)
    mailbox.clear()
    apps: list[Flask] = []

    def factory(config: dict[str, Any] | None = None, instance: Path | None = None) -> Flask:
        settings = merge(merge(base_config(mailbox), store_config), config or {})
        app = create_app(settings, instance_path=instance or tmp_path / "instance")
        app.config["TESTING"] = True
        apps.append(app)
        return app

    yield factory
    _close_databases(apps)


@pytest.fixture
def make_live(
    tmp_path: Path, mailbox: Mailbox, monkeypatch: pytest.MonkeyPatch, store_config: dict[str, Any]
) -> Iterator[Callable[..., tuple[Flask, LiveServer]]]:
    """An in-process app and a gunicorn server on the same instance folder."""
    monkeypatch.delenv("KOERIER_CONFIG", raising=False)
    monkeypatch.delenv("KOERIER_SECRET_KEY", raising=False)
    mailbox.clear()
    servers: list[LiveServer] = []
    apps: list[Flask] = []

    def factory(
        config: dict[str, Any] | None = None, workers: int = 1, port: int | None = None, threads: int = 4
    ) -> tuple[Flask, LiveServer]:
        instance = tmp_path / "live"
        instance.mkdir()
        (instance / "config.toml").write_text(tomli_w.dumps(merge(merge(base_config(mailbox), store_config), config or {})))
        # The server first, so that its workers meet a fresh database.
        servers.append(LiveServer(instance, workers=workers, port=port, threads=threads))
        app = create_app(instance_path=instance)
        app.config["TESTING"] = True
        apps.append(app)
        return app, servers[-1]

    yield factory
    for server in servers:
        server.stop()
    _close_databases(apps)


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app()


@pytest.fixture
def sender(app: Flask, mailbox: Mailbox) -> Sender:
    return Sender(app, mailbox)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the whole session, started on first use."""
    bindir = find_bindir()
    if bindir is None:
        pytest.fail(INSTALL_HINT, pytrace=False)
    server = PostgresServer(bindir).start()
    yield server
    server.stop()


@pytest.fixture
def pg_database(postgres: PostgresServer) -> Iterator[PostgresDatabase]:
    """A fresh, empty database for this test; ``.url`` goes into ``storage.database_url``."""
    database = PostgresDatabase(postgres, postgres.create_database())
    yield database
    postgres.drop_database(database.name)


@pytest.fixture
def pg_url(pg_database: PostgresDatabase) -> str:
    return pg_database.url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    """Runs a test on each database engine: "" is the default SQLite file."""
    return "" if request.param == "sqlite" else request.getfixturevalue("pg_url")

"""Fixtures every test file shares.

Setups: a test that builds an app (``make_app``, ``make_live``, ``app``,
``sender``, or ``setup`` itself) runs once in each setup an operator can run
Koerier in. "embedded" is the one-command start: SQLite in the instance
folder and the local file store. "distributed" is the scale-out one: a
PostgreSQL database (on a server the tests start), and for the tests about
what is stored (marked ``both_stores``) an S3 bucket on a SeaweedFS server
the tests start; the local file store for the others.
``Setup.config`` is the one place that says what a setup means; every app a
test makes gets it under the test's own settings. A test that is by nature
about one setup says so with ``@pytest.mark.setup("embedded")`` (and why).
Each test is marked with its setup, so ``-m embedded`` or
``-m "not distributed"`` picks one.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from flask import Flask
from sqlalchemy.orm import close_all_sessions

from app import create_app, db

from .clamd import INSTALL_HINT as CLAMD_INSTALL_HINT
from .clamd import CLAMD_MAX_BYTES, ClamdServer, find_clamd
from .live import LiveServer
from .mailbox import Mailbox
from .pg import INSTALL_HINT, PostgresDatabase, PostgresServer, find_bindir
from .seaweed import INSTALL_HINT as WEED_INSTALL_HINT
from .seaweed import SeaweedServer, find_weed
from .sms_gateway import SmsGateway
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


SETUPS = ("embedded", "distributed")


@dataclass(frozen=True)
class Setup:
    """Where a test's apps keep their data: what every app the test makes gets under its own settings."""

    name: str
    config: dict[str, Any] = field(default_factory=dict)
    database: PostgresDatabase | None = None

    @property
    def database_url(self) -> str:
        """``storage.database_url``: "" for the SQLite file in the instance folder."""
        return self.config.get("storage", {}).get("database_url", "")

    def write_config(self, instance: Path) -> None:
        """The setup into the instance's config.toml, for a ``flask`` command run beside the test's app."""
        (instance / "config.toml").write_text(tomli_w.dumps(self.config))

    def files_at_rest(self, instance: Path) -> list[Path]:
        """Every file an attacker who takes the disks finds the app's data in."""
        files = [p for p in instance.rglob("*") if p.is_file()]
        return files + (self.database.files() if self.database is not None else [])


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "setup(*names): run only in these setups (embedded, distributed)")
    config.addinivalue_line("markers", "both_stores: about what is stored; its blobs go to S3 in the distributed setup")
    for name in SETUPS:
        config.addinivalue_line("markers", f"{name}: the test runs in the {name} setup")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "setup" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("setup")
    names = marker.args if marker else SETUPS
    assert set(names) <= set(SETUPS), f"unknown setup in {names}"
    metafunc.parametrize(
        "setup", [pytest.param(name, marks=getattr(pytest.mark, name)) for name in names], indirect=True, ids=names,
    )


@pytest.fixture
def setup(request: pytest.FixtureRequest) -> Setup:
    if request.param == "embedded":
        return Setup("embedded")
    database: PostgresDatabase = request.getfixturevalue("pg_database")
    return Setup("distributed", {"storage": {"database_url": database.url}}, database)


def base_config(mailbox: Mailbox, setup: Setup) -> dict[str, Any]:
    return merge(setup.config, {
        "site": {"base_url": "https://portal.example.nl", "name": "Gemeente Voorbeeld"},
        "mail": {"backend": "smtp", "smtp_host": "127.0.0.1", "smtp_port": mailbox.port, "from_address": "noreply@portal.example.nl"},
        "crypto": FAST_CRYPTO,
        # Tests run the job themselves, with an injected clock.
        "retention": {"scheduler": False},
    })


def _close_databases(apps: list[Flask]) -> None:
    """Let go of every connection, so a test's PostgreSQL database can be dropped cleanly."""
    # Sessions a test opened in an app context and left open: closed now,
    # while their database is there, not by the garbage collector later
    # (whose rollback on a dropped database would fail).
    close_all_sessions()
    for app in apps:
        db.dispose(app)


def _session_server(found: str | Path | None, install_hint: str, server_class: Callable[[Any], Any]) -> Iterator[Any]:
    """A server from ``found`` binaries for the whole session (per xdist
    worker); without them the test fails saying what to install, never skips."""
    if found is None:
        pytest.fail(install_hint, pytrace=False)
    server = server_class(found).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def seaweed() -> Iterator[SeaweedServer]:
    """One SeaweedFS server (an S3 store), started on first use."""
    yield from _session_server(find_weed(), WEED_INSTALL_HINT, SeaweedServer)


@pytest.fixture(scope="session")
def clamd() -> Iterator[ClamdServer]:
    """One ClamAV daemon that knows the EICAR test file, started on first use."""
    yield from _session_server(find_clamd(), CLAMD_INSTALL_HINT, ClamdServer)


@pytest.fixture
def own_clamd() -> Iterator[ClamdServer]:
    """A ClamAV daemon for this test alone, which it may stop (``halt``) and start again."""
    yield from _session_server(find_clamd(), CLAMD_INSTALL_HINT, ClamdServer)


@pytest.fixture
def roomy_clamd() -> Iterator[ClamdServer]:
    """A ClamAV daemon for this test alone that takes as large a stream as clamd can (4 GiB)."""
    yield from _session_server(find_clamd(), CLAMD_INSTALL_HINT, partial(ClamdServer, stream_max_bytes=CLAMD_MAX_BYTES))


@pytest.fixture
def s3_bucket(seaweed: SeaweedServer) -> Iterator[str]:
    """A fresh, empty bucket for this test."""
    name = seaweed.create_bucket()
    yield name
    seaweed.delete_bucket(name)


@pytest.fixture
def blob_backend(request: pytest.FixtureRequest, setup: Setup) -> str:
    """Where the test's portals keep their blobs: in the distributed setup,
    S3 for the tests marked ``both_stores`` (tests/blobs.py), which are the
    ones about what is stored; the local folder otherwise."""
    about_blobs = request.node.get_closest_marker("both_stores") is not None
    return "s3" if about_blobs and setup.name == "distributed" else "local"


@pytest.fixture
def store_config(blob_backend: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    """The configuration that puts a portal's blobs where ``blob_backend`` says."""
    if blob_backend == "local":
        return {}
    seaweed: SeaweedServer = request.getfixturevalue("seaweed")
    return {"storage": seaweed.config(request.getfixturevalue("s3_bucket"))}


@pytest.fixture
def make_app(
    tmp_path: Path, mailbox: Mailbox, setup: Setup, monkeypatch: pytest.MonkeyPatch, store_config: dict[str, Any]
) -> Iterator[Callable[..., Flask]]:
    monkeypatch.delenv("KOERIER_CONFIG", raising=False)
    monkeypatch.delenv("KOERIER_SECRET_KEY", raising=False)
    mailbox.clear()
    apps: list[Flask] = []

    def factory(config: dict[str, Any] | None = None, instance: Path | None = None) -> Flask:
        settings = merge(merge(base_config(mailbox, setup), store_config), config or {})
        app = create_app(settings, instance_path=instance or tmp_path / "instance")
        app.config["TESTING"] = True
        apps.append(app)
        return app

    yield factory
    _close_databases(apps)


@pytest.fixture
def make_live(
    tmp_path: Path, mailbox: Mailbox, setup: Setup, monkeypatch: pytest.MonkeyPatch, store_config: dict[str, Any]
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
        (instance / "config.toml").write_text(tomli_w.dumps(merge(merge(base_config(mailbox, setup), store_config), config or {})))
        # The server first, so that its workers meet a fresh database.
        servers.append(LiveServer(instance, workers=workers, port=port, threads=threads))
        app = create_app(instance_path=instance)
        app.config["TESTING"] = True
        apps.append(app)
        return app, servers[-1]

    yield factory
    for server in servers:
        server.stop()
        # Shown with a failed test's report: why a server stopped answering.
        print(f"gunicorn.log of {server.url}:\n{server.log_tail()}")
    _close_databases(apps)


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app()


@pytest.fixture
def sender(app: Flask, mailbox: Mailbox) -> Sender:
    return Sender(app, mailbox)


@pytest.fixture
def sms_gateway() -> Iterator[SmsGateway]:
    """A loopback SMS provider API that records the requests it gets (tests/sms_gateway.py)."""
    gateway = SmsGateway().start()
    yield gateway
    gateway.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One PostgreSQL server, started on first use."""
    yield from _session_server(find_bindir(), INSTALL_HINT, PostgresServer)


@pytest.fixture(scope="session")
def pg_template(postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A database at the current schema, made by the migrations as an operator's would be, to copy for each test."""
    name = postgres.create_database()
    app = create_app({"storage": {"database_url": postgres.url(name)}}, instance_path=tmp_path_factory.mktemp("template"))
    # CREATE DATABASE ... TEMPLATE refuses while anyone is connected to it.
    _close_databases([app])
    return name


@pytest.fixture
def pg_database(postgres: PostgresServer, pg_template: str) -> Iterator[PostgresDatabase]:
    """A fresh database at the current schema for this test; ``.url`` goes into ``storage.database_url``."""
    database = PostgresDatabase(postgres, postgres.create_database(template=pg_template))
    yield database
    postgres.drop_database(database.name)


@pytest.fixture
def empty_pg_database(postgres: PostgresServer) -> Iterator[PostgresDatabase]:
    """A fresh database without any table, as an operator creates one for a new deployment."""
    database = PostgresDatabase(postgres, postgres.create_database())
    yield database
    postgres.drop_database(database.name)

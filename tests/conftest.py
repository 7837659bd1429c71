from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from flask import Flask

from app import create_app

from .live import LiveServer
from .mailbox import Mailbox
from .walker import Sender

# Cheap Argon2 for speed; tests/test_production_params.py uses the real ones.
FAST_CRYPTO = {"argon2_time_cost": 1, "argon2_memory_kib": 64, "argon2_parallelism": 1}


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
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


@pytest.fixture
def make_app(tmp_path: Path, mailbox: Mailbox, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Flask]:
    monkeypatch.delenv("KOERIER_CONFIG", raising=False)
    monkeypatch.delenv("KOERIER_SECRET_KEY", raising=False)
    mailbox.clear()

    def factory(config: dict[str, Any] | None = None, instance: Path | None = None) -> Flask:
        app = create_app(merge(base_config(mailbox), config or {}), instance_path=instance or tmp_path / "instance")
        app.config["TESTING"] = True
        return app

    return factory


@pytest.fixture
def make_live(tmp_path: Path, mailbox: Mailbox, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., tuple[Flask, LiveServer]]]:
    """An in-process app and a gunicorn server on the same instance folder."""
    monkeypatch.delenv("KOERIER_CONFIG", raising=False)
    monkeypatch.delenv("KOERIER_SECRET_KEY", raising=False)
    mailbox.clear()
    servers: list[LiveServer] = []

    def factory(
        config: dict[str, Any] | None = None, workers: int = 1, port: int | None = None, threads: int = 4,
    ) -> tuple[Flask, LiveServer]:
        instance = tmp_path / "live"
        instance.mkdir()
        (instance / "config.toml").write_text(tomli_w.dumps(merge(base_config(mailbox), config or {})))
        # The server first, so that its workers meet a fresh database.
        servers.append(LiveServer(instance, threads=threads, workers=workers, port=port))
        app = create_app(instance_path=instance)
        app.config["TESTING"] = True
        return app, servers[-1]

    yield factory
    for server in servers:
        server.stop()


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app()


@pytest.fixture
def sender(app: Flask, mailbox: Mailbox) -> Sender:
    return Sender(app, mailbox)

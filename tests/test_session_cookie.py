"""A session cookie that does not verify: the visitor starts again, and the
operator reads why (most likely a node with another secret key)."""

from __future__ import annotations

import logging
from pathlib import Path

from .walker import Sender

WARNING = "does not verify with this node's secret key"


def _warnings(caplog) -> list[logging.LogRecord]:  # type: ignore[no-untyped-def]
    return [r for r in caplog.records if WARNING in r.getMessage() and "KOERIER_SECRET_KEY" in r.getMessage()]


def test_a_node_with_another_secret_key_is_named_in_the_log(make_app, mailbox, tmp_path: Path, caplog) -> None:
    sender = Sender(make_app(), mailbox)
    sender.personal()
    sender.verify()
    assert sender.get("/send/recipients").status_code == 200
    assert _warnings(caplog) == []

    # The load balancer sends the next request to a node set up apart.
    other = make_app(instance=tmp_path / "other-node")
    assert other.config["SECRET_KEY"] != sender.app.config["SECRET_KEY"]
    sender.restart_on(other)
    sent_back = sender.get("/send/recipients")
    assert sent_back.status_code == 302 and sent_back.location.endswith("/send/")
    [warning] = _warnings(caplog)
    assert warning.levelno == logging.WARNING
    # Anyone can send a bad cookie: not a line per request.
    sender.get("/send/recipients")
    assert len(_warnings(caplog)) == 1

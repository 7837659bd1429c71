"""Attacks on malware scanning by a verified sender, with a real clamd and a real server."""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import requests

from .clamd import ClamdServer
from .live import free_port
from .test_scanning import CLEAN_PDF, OUTSIDE, _config, _events
from .clamd import EICAR
from .walker import Sender, multipart


def _connections_to(port: int) -> int:
    """Open TCP connections to ``port`` on this machine, counted from the connecting side."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as fh:
            for line in list(fh)[1:]:
                fields = line.split()
                if fields[3] == "01" and int(fields[2].rsplit(":", 1)[1], 16) == port:
                    count += 1
    return count


def _wait_for(condition: Any, deadline_seconds: float = 60) -> None:
    deadline = time.monotonic() + deadline_seconds
    while not condition():
        assert time.monotonic() < deadline, "gave up waiting"
        time.sleep(0.05)


def test_parallel_nexts_cannot_make_the_late_scan_run_past_the_upload_caps(make_live, mailbox, own_clamd: ClamdServer) -> None:
    """Files let in unscanned are scanned when the sender presses Next. That
    scan ran outside the caps on concurrent uploads: a sender firing Next
    many times at once had every file scanned once per request, each holding
    a server thread and a clamd thread (a worker pool held with one
    upload's bytes). Now the late scan counts as an upload: one request
    past the sender's cap is told to try again, without scanning."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    rules = [{"name": "intern", "recipients": ["*@gemeente.example"], "scan": "off"}]
    config = {
        **_config(own_clamd), "rules": rules, "site": {"base_url": base},
        "limits": {"concurrent_uploads_per_sender": 1},
    }
    app, _ = make_live(config, port=port, threads=4)
    sender = Sender(app, mailbox, via=base)
    sender.personal()
    sender.verify()
    assert sender.recipients("anna@gemeente.example").status_code == 302
    assert sender.files([("verslag.pdf", CLEAN_PDF), ("test.txt", EICAR)]).status_code == 302
    assert sender.recipients(OUTSIDE).status_code == 302
    body, content_type = multipart([
        ("csrf_token", sender.upload_token()), ("files", ("", b"")), ("message", ""), ("action", "next"),
    ])
    headers = {"Cookie": sender.cookie_header(), "Content-Type": content_type, "Origin": base, "Accept-Language": "en"}
    answers: dict[str, int] = {}

    def press_next(which: str) -> None:
        answers[which] = requests.post(f"{base}/send/files", data=body, headers=headers, timeout=120).status_code

    assert own_clamd.process is not None
    # clamd stalls (busy, swapping): the first Next waits in its scan.
    os.kill(own_clamd.process.pid, signal.SIGSTOP)
    first = threading.Thread(target=press_next, args=("first",))
    second = threading.Thread(target=press_next, args=("second",))
    try:
        first.start()
        _wait_for(lambda: _connections_to(own_clamd.port) == 1)
        second.start()
        _wait_for(lambda: not second.is_alive() or _connections_to(own_clamd.port) > 1)
    finally:
        os.kill(own_clamd.process.pid, signal.SIGCONT)
        first.join(timeout=120)
        second.join(timeout=120)
    assert answers == {"first": 422, "second": 429}
    # Each file scanned once.
    assert len(_events(app, "file_scanned")) == 1 and len(_events(app, "file_infected")) == 1

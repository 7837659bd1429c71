"""A loopback HTTP server that plays an SMS provider's API and records what it gets.

The portal's own HTTP client (app/sms/http.py) talks to it over a real
socket. ``failing`` answers 500 (``failing_for``: to those numbers only),
``hanging`` answers only after the client's timeout, as an overloaded
provider does; ``while_sending`` runs before each answer, while the portal
waits for it; ``redirect_to`` answers a POST with a redirect there, as a
provider that moved (or an http:// URL behind an https-only API) does.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, list[str]]:
        return parse_qs(self.body.decode())


class SmsGateway:
    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        self.failing = False
        self.failing_for: set[str] = set()
        self.hanging = 0.0
        self.while_sending: Callable[[], None] | None = None
        self.redirect_to: str | None = None
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's hook name)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                # Recorded as it arrives, so that the requests are in the client's order.
                with gateway.lock:
                    gateway.requests.append(Request(self.command, self.path, dict(self.headers), body))
                if gateway.redirect_to is not None and self.command == "POST":
                    self.send_response(302)
                    self.send_header("Location", gateway.redirect_to)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if gateway.hanging:
                    time.sleep(gateway.hanging)
                if gateway.while_sending is not None:
                    gateway.while_sending()
                refused = gateway.failing or (
                    bool(gateway.failing_for) and bool(gateway.failing_for & set(json.loads(body)["recipients"]))
                )
                status = 500 if refused else 201
                answer = b'{"id": "test"}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            do_PUT = do_GET = do_POST

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/messages"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> "SmsGateway":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def config(self, **extra: Any) -> dict[str, Any]:
        """``[sms]`` for a MessageBird-style JSON API at this server."""
        return {
            "backend": "http", "url": self.url, "auth_header": "Authorization", "auth_value": "AccessKey test-key",
            "body": {"originator": "Gemeente", "recipients": ["{msisdn}"], "body": "{text}"}, "timeout_seconds": 2,
            **extra,
        }

    def texts_to(self, msisdn: str) -> list[str]:
        with self.lock:
            return [r.json()["body"] for r in self.requests if r.json()["recipients"] == [msisdn]]

    def code_for(self, msisdn: str) -> str:
        import re

        texts = self.texts_to(msisdn)
        assert texts, f"no SMS to {msisdn}"
        match = re.search(r"\b(\d{6,8})\b", texts[-1])
        assert match, texts[-1]
        return match.group(1)

"""A real SMTP server on loopback (aiosmtpd) that keeps what it receives."""

from __future__ import annotations

import email
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import default
from pathlib import Path

from aiosmtpd.controller import Controller


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    raw: bytes

    @property
    def text(self) -> str:
        return self.message.get_body(preferencelist=("plain",)).get_content()

    @property
    def html(self) -> str:
        return self.message.get_body(preferencelist=("html",)).get_content()


class _Handler:
    def __init__(self, box: "Mailbox") -> None:
        self.box = box

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's hook name)
        if self.box.refuse:
            return "554 5.7.1 Refused by the test"
        raw = envelope.original_content or envelope.content
        msg = email.message_from_bytes(raw, policy=default)
        with self.box.lock:
            self.box.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos), msg, raw))
        return "250 OK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[Received] = []
        self.lock = threading.Lock()
        self.refuse = False
        self.port = free_port()
        self.controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port)

    def start(self) -> None:
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()

    def clear(self) -> None:
        with self.lock:
            self.messages.clear()

    @contextmanager
    def refusing(self) -> Iterator[None]:
        """The server refuses every mail while in this block, as a relay that is full or blocks us does."""
        self.refuse = True
        try:
            yield
        finally:
            self.refuse = False

    def to(self, address: str) -> list[Received]:
        with self.lock:
            return [m for m in self.messages if address in m.rcpt_tos]

    def last_to(self, address: str, timeout: float = 5.0) -> Received:
        # Delivery is synchronous in the portal; the wait only covers the
        # server thread handing the message to us.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.to(address)
            if found:
                return found[-1]
            time.sleep(0.01)
        raise AssertionError(f"no mail to {address}")

    def access_id_for(self, address: str) -> str:
        """The transaction ID in the last notification mail to ``address``."""
        match = re.search(r"[?&]id=([0-9A-Z-]+)", self.last_to(address).text)
        assert match, "no transaction ID in the mail"
        return match.group(1)

    def code_for(self, address: str) -> str:
        match = re.search(r"^\s+(\d{6,12})\s*$", self.last_to(address).text, re.M)
        assert match, "no verification code in the mail"
        return match.group(1)


class Outbox(Mailbox):
    """The outbox folder, read the way the tests read the SMTP mailbox."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.messages = []
        self.lock = threading.Lock()
        self.seen: set[Path] = set()

    def clear(self) -> None:
        self.seen = set(self.folder.glob("*.eml"))

    def to(self, address: str) -> list[Received]:
        found = []
        for path in sorted(set(self.folder.glob("*.eml")) - self.seen):
            raw = path.read_bytes()
            message = email.message_from_bytes(raw, policy=default)
            if address in message["To"]:
                found.append(Received(message["From"], [address], message, raw))
        return found

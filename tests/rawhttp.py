"""HTTP requests at the socket level, for bodies no ordinary client sends.

``requests`` sends the whole body before it looks at the answer, and loses
the answer when the server closes early. Here a body is streamed while the
socket is watched, so a test sees the server's answer the moment it comes
and how much of the body the server took before it answered; and a request
can be held open with its body half sent, like a slow or stalled client.
"""

from __future__ import annotations

import select
import socket
from collections.abc import Iterable
from dataclasses import dataclass

# Catches a hang; never a measure of speed.
HANG = 60.0


class _Answered(Exception):
    pass


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


def _head(method: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def read_answer(sock: socket.socket, timeout: float = HANG) -> Answer:
    sock.setblocking(True)
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        more = sock.recv(65536)
        if not more:
            raise ConnectionError(f"the server closed without an answer (got {data[:200]!r})")
        data += more
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        more = sock.recv(65536)
        if not more:
            break
        body += more
    return Answer(int(status_line.split()[1]), headers, body)


def stream(port: int, method: str, path: str, headers: dict[str, str], chunks: Iterable[bytes]) -> tuple[Answer, int]:
    """Send ``chunks`` as the body until the server answers; the answer and the body bytes sent."""
    with socket.create_connection(("127.0.0.1", port), timeout=HANG) as sock:
        sock.sendall(_head(method, path, headers))
        sock.setblocking(False)
        sent = 0
        try:
            for chunk in chunks:
                view = memoryview(chunk)
                while view:
                    readable, writable, _ = select.select([sock], [sock], [], HANG)
                    if readable:
                        raise _Answered
                    assert writable, "the server neither read the body nor answered"
                    try:
                        n = sock.send(view)
                    except BlockingIOError:
                        continue
                    view, sent = view[n:], sent + n
        except (_Answered, BrokenPipeError, ConnectionResetError):
            pass
        return read_answer(sock), sent


class Held:
    """A request whose head and first body bytes are sent, and whose body then waits."""

    def __init__(self, port: int, method: str, path: str, headers: dict[str, str], first: bytes = b"") -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=HANG)
        self.sock.sendall(_head(method, path, headers) + first)

    def answered(self, wait: float = 0.0) -> bool:
        """Whether the server has answered (or closed) already."""
        readable, _, _ = select.select([self.sock], [], [], wait)
        return bool(readable)

    def send(self, data: bytes) -> bool:
        """More body; False when the server no longer takes it."""
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def answer(self, timeout: float = HANG) -> Answer:
        return read_answer(self.sock, timeout)

    def close(self) -> None:
        self.sock.close()

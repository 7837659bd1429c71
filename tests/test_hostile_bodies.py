"""Hostile multipart bodies over real HTTP: every buffer of the decoder is bounded.

Each body is a few hundred megabytes, generated as it is sent. The server
must refuse it (400) as soon as a bound is passed, without reading the
rest, without its worker's memory growing by more than a few megabytes,
and without storing anything.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import func, select

from app import db
from app.models import StoredFile, Upload

from .rawhttp import stream
from .walker import Sender

MiB = 1024 * 1024
SIZE = 300 * MiB
BOUNDARY = "KoerierHostileBoundary"


def part(name: str, filename: str | None = None) -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
    extra = "Content-Type: application/pdf\r\n" if filename else ""
    return f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n{extra}\r\n".encode()


def filler(size: int = SIZE) -> Iterator[bytes]:
    block = b"a" * MiB
    for _ in range(size // MiB):
        yield block


def fields(token: str) -> Iterator[bytes]:
    """A valid token, then field after field, each below any one-field limit."""
    yield part("csrf_token") + token.encode() + b"\r\n"
    value = b"b" * (128 * 1024)
    for i in range(SIZE // len(value)):
        yield part(f"field{i}") + value + b"\r\n"


END = f"\r\n--{BOUNDARY}--\r\n".encode()
UNENDING_HEADER = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="csrf_token"\r\nX-Padding: '.encode()
BODIES: dict[str, Callable[[str], Iterator[bytes]]] = {
    "no boundary line at all": lambda token: filler(),
    "a part header that never ends": lambda token: iter([UNENDING_HEADER, *filler()]),
    "a huge field before the token": lambda token: iter(
        [part("message"), *filler(), b"\r\n", part("csrf_token"), token.encode(), END]
    ),
    "a file part before the token": lambda token: iter(
        [part("files", "scan.pdf"), *filler(), b"\r\n", part("csrf_token"), token.encode(), END]
    ),
    "a huge token": lambda token: iter([part("csrf_token"), *filler(), END]),
    "endless fields after the token": fields,
    "an endless epilogue": lambda token: iter(
        [part("csrf_token"), token.encode(), b"\r\n", part("action"), b"upload", END, *filler()]
    ),
}


@pytest.mark.parametrize("shape", list(BODIES))
def test_hostile_body_is_refused_early_in_bounded_memory(make_live, mailbox, shape: str) -> None:
    app, server = make_live()
    sender = Sender(app, mailbox)
    sender.personal()
    sender.verify()
    sender.recipients("anna@gemeente.example")
    token = sender.upload_token()
    headers = {"Cookie": sender.cookie_header(), "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    # A small malformed body first, so that the worker has loaded everything
    # it loads once before its memory is measured.
    answer, _ = stream(server.port, "POST", "/send/files", {**headers, "Content-Length": "2"}, [b"--"])
    assert answer.status == 400

    server.reset_peak_rss()
    before = server.rss()
    length = sum(len(chunk) for chunk in BODIES[shape](token))
    headers["Content-Length"] = str(length)
    answer, sent = stream(server.port, "POST", "/send/files", headers, BODIES[shape](token))

    assert answer.status == 400, answer.body[:300]
    assert sent < length // 10, f"the server read {sent} of {length} bytes before answering"
    growth = server.peak_rss() - before
    assert growth < 10 * MiB, f"the worker grew by {growth / MiB:.1f} MiB"
    with app.app_context():
        session = db.session()
        assert session.scalar(select(func.count()).select_from(StoredFile)) == 0
        assert session.scalar(select(func.count()).select_from(Upload)) == 0
    assert not [p for p in app.extensions["koerier"].store.root.rglob("*") if p.is_file()]

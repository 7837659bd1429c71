"""A worker killed in the middle of a resumable upload: the resume must never
seal a segment index a second time under the same file key."""

from __future__ import annotations

import base64
import io
import os
import signal
import socket
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
import requests

from app.crypto.keys import SALT_BYTES, new_key
from app.crypto.stream import HEADER_BYTES, SEGMENT_SIZE, TAG_BYTES, ResumableWriter, SegmentReader

from .live import LiveServer, resume_upload, wait_for
from .walker import Sender

MiB = 1024 * 1024
STRIDE = SEGMENT_SIZE + TAG_BYTES
IDS = {"transfer_id": "transfer", "file_id": "file"}


def reused_nonces(before: bytes, after: bytes) -> list[int]:
    """Segment indices sealed under one file key (one header salt) in both
    blobs with different ciphertext: the same nonce over two plaintexts.
    A torn segment counts by the bytes it has."""
    if before[HEADER_BYTES - SALT_BYTES : HEADER_BYTES] != after[HEADER_BYTES - SALT_BYTES : HEADER_BYTES]:
        return []
    reused = []
    for index, start in enumerate(range(HEADER_BYTES, len(before), STRIDE)):
        old, new = before[start : start + STRIDE], after[start : start + STRIDE]
        common = min(len(old), len(new))
        if common and old[:common] != new[:common]:
            reused.append(index)
    return reused


def stalled_patch(server: LiveServer, url: str, headers: dict[str, str], length: int, first: bytes) -> socket.socket:
    """A PATCH that announces ``length`` bytes, sends ``first`` and then stalls."""
    lines = [f"PATCH {urlsplit(url).path} HTTP/1.1", f"Host: 127.0.0.1:{server.port}", f"Content-Length: {length}"]
    lines += [f"{key}: {value}" for key, value in headers.items()]
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + first)
    return sock


def test_a_killed_worker_never_makes_a_resume_reuse_a_nonce(make_live, mailbox) -> None:
    app, server = make_live()
    sender = Sender(app, mailbox)
    sender.personal()
    sender.verify()
    sender.recipients("anna@gemeente.example")
    tus = {"Tus-Resumable": "1.0.0", "Cookie": sender.cookie_header(), "X-CSRFToken": sender.upload_token()}
    length = 8 * MiB
    metadata = "filename " + base64.b64encode(b"scan.zip").decode()
    created = requests.post(
        server.url + "/send/uploads", timeout=30,
        headers={**tus, "Upload-Length": str(length), "Upload-Metadata": metadata},
    )
    assert created.status_code == 201
    url = urljoin(server.url, created.headers["Location"])
    store = app.extensions["koerier"].store

    # A few MiB arrive quickly, then the connection stalls with the worker holding the blob.
    first = os.urandom(3 * MiB)
    sock = stalled_patch(
        server, url, {**tus, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}, length, first
    )
    [partial] = wait_for(lambda: list(store.root.rglob("*.partial")), "the pending blob")
    sealed = HEADER_BYTES + len(first) // SEGMENT_SIZE * STRIDE
    wait_for(lambda: partial.stat().st_size >= sealed, "the first bytes to be sealed")
    snapshot = partial.read_bytes()
    assert len(snapshot) > HEADER_BYTES

    old_worker = server.worker_pid()
    os.kill(old_worker, signal.SIGKILL)
    wait_for(lambda: [pid for pid in server.worker_pids() if pid != old_worker], "gunicorn's new worker")
    sock.close()

    # The client resumes, with other bytes, from wherever the server says.
    second = os.urandom(length)
    resume_upload(url, tus, second)

    final = Path(str(partial).removesuffix(".partial")).read_bytes()
    assert reused_nonces(snapshot, final) == []
    # What arrives is the resumed upload, whole.
    recipient = sender.open_uploaded()
    assert recipient.get(recipient.file_links()["scan.zip"]).data == second


def test_the_check_sees_a_torn_segment() -> None:
    """The comparison above, on blobs made to reuse a nonce, including a torn last segment."""
    header = b"h" * HEADER_BYTES
    before = header + b"a" * STRIDE + b"b" * 100
    assert reused_nonces(before, header + b"a" * STRIDE + b"c" * STRIDE) == [1]
    assert reused_nonces(before, header + b"a" * STRIDE + b"b" * STRIDE) == []
    assert reused_nonces(before, b"g" * HEADER_BYTES + b"x" * 2 * STRIDE) == []


class Ledger:
    """The database's side of a ResumableWriter: the reserved mark, every
    reservation asked for, and a commit that fails after ``commits`` of them."""

    def __init__(self, step: int, commits: int = 1 << 30) -> None:
        self.step, self.commits, self.mark, self.asked = step, commits, 0, []

    def reserve(self, index: int) -> int:
        self.asked.append(index)
        if len(self.asked) > self.commits:
            raise RuntimeError("the commit failed")
        self.mark = index + self.step
        return self.mark


class FailingSink(io.BytesIO):
    """A disk that fails (after tearing the write) once ``fail_at`` bytes are on it."""

    def __init__(self, fail_at: int) -> None:
        super().__init__()
        self.fail_at = fail_at

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self.tell() + len(data) > self.fail_at:
            super().write(bytes(data)[:100])
            raise OSError("disk full")
        return super().write(data)


def test_no_index_is_sealed_before_it_is_reserved() -> None:
    ledger, sink = Ledger(step=2, commits=1), io.BytesIO()
    writer = ResumableWriter.start(sink, new_key(), 10 * SEGMENT_SIZE, ledger.reserve, **IDS)
    with pytest.raises(RuntimeError):
        writer.write(os.urandom(3 * SEGMENT_SIZE))
    assert ledger.asked == [0, 2]
    assert len(sink.getvalue()) == HEADER_BYTES + 2 * STRIDE and writer.spent == 2


def test_a_failed_write_spends_its_index_and_the_resume_starts_over() -> None:
    dek, length = new_key(), 4 * SEGMENT_SIZE
    ledger, sink = Ledger(step=100), FailingSink(HEADER_BYTES + STRIDE + 10)
    writer = ResumableWriter.start(sink, dek, length, ledger.reserve, **IDS)
    with pytest.raises(OSError):
        writer.write(os.urandom(2 * SEGMENT_SIZE))
    assert (writer.offset, writer.spent) == (SEGMENT_SIZE, 2)
    torn = sink.getvalue()

    # What the owner stores: the offset, and the indices spent.
    data, sink.fail_at = os.urandom(length), 1 << 40
    resumed = ResumableWriter(sink, dek, length, writer.offset, writer.spent, ledger.reserve, **IDS)
    assert resumed.restarted and resumed.offset == 0
    resumed.write(data)
    blob = sink.getvalue()
    assert reused_nonces(torn, blob) == []
    assert b"".join(SegmentReader(io.BytesIO(blob), dek, len(blob), **IDS).iter_range()) == data


def test_a_clean_end_resumes_where_it_stopped() -> None:
    dek, length = new_key(), 4 * SEGMENT_SIZE
    ledger, sink = Ledger(step=100), io.BytesIO()
    data = os.urandom(length)
    writer = ResumableWriter.start(sink, dek, length, ledger.reserve, **IDS)
    writer.write(data[: 2 * SEGMENT_SIZE + 7])
    header = sink.getvalue()[:HEADER_BYTES]
    resumed = ResumableWriter(sink, dek, length, writer.offset, writer.spent, ledger.reserve, **IDS)
    assert not resumed.restarted and resumed.offset == 2 * SEGMENT_SIZE
    resumed.write(data[resumed.offset :])
    blob = sink.getvalue()
    assert blob[:HEADER_BYTES] == header
    assert b"".join(SegmentReader(io.BytesIO(blob), dek, len(blob), **IDS).iter_range()) == data

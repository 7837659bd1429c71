"""A worker killed in the middle of a resumable upload into the local store:
the resume must never seal a segment index a second time under the same file
key. (The S3 store's rule, which keeps what was committed, is tested in
tests/test_s3.py.)"""

from __future__ import annotations

import base64
import io
import os
import resource
import signal
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
import requests

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from app.crypto.keys import SALT_BYTES
from app.crypto.stream import HEADER_BYTES, SEGMENT_SIZE, TAG_BYTES
from app.db import new_session
from app.models import Upload
from app.storage import RESERVE_SEGMENTS, UploadGone
from app.upload_limits import UploadLease

from .live import LiveServer, resume_upload, wait_for
from .walker import Sender

MiB = 1024 * 1024
STRIDE = SEGMENT_SIZE + TAG_BYTES


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


@pytest.fixture
def pending_upload(app, mailbox) -> str:  # type: ignore[no-untyped-def]
    """The id of a resumable upload of ten segments, created over HTTP, nothing stored yet."""
    sender = Sender(app, mailbox)
    sender.personal()
    sender.verify()
    sender.recipients("anna@gemeente.example")
    created = sender.post("/send/uploads", headers={
        "Tus-Resumable": "1.0.0", "X-CSRFToken": sender.upload_token(), "Upload-Length": str(10 * SEGMENT_SIZE),
        "Upload-Metadata": "filename " + base64.b64encode(b"scan.zip").decode(),
    })
    assert created.status_code == 201
    return created.headers["Location"].rsplit("/", 1)[1]


def _resumed(app, upload_id: str, commit: Callable[[Session, Upload], None] | None = None):  # type: ignore[no-untyped-def]
    """The local store's hold on the upload, in a session of its own; ``commit`` stands for the caller's."""
    session = new_session(app)
    upload = session.get(Upload, upload_id)

    def commit_columns(**columns: object) -> None:
        for key, value in columns.items():
            setattr(upload, key, value)
        (commit or _commit)(session, upload)

    held = app.extensions["koerier"].store.resume(session, upload, commit_columns)
    return session, upload, held


def _commit(session: Session, upload: Upload) -> None:
    session.commit()


def _partial(app, upload: Upload) -> Path:  # type: ignore[no-untyped-def]
    return app.extensions["koerier"].store.root / upload.blob_key[:2] / (upload.blob_key + ".partial")


def test_no_index_is_written_before_it_is_reserved(app, pending_upload: str) -> None:
    marks: list[int] = []

    def commit(session: Session, upload: Upload) -> None:
        marks.append(upload.reserved_segments)
        if len(marks) > 1:
            raise RuntimeError("the commit failed")
        session.commit()

    session, upload, held = _resumed(app, pending_upload, commit)
    with session, held as pending:
        with pytest.raises(RuntimeError):
            for index in range(RESERVE_SEGMENTS + 1):
                pending.put(index, b"s" * STRIDE)
        path = _partial(app, upload)
    # The reservation for index 1024 failed: nothing of it was written, by
    # the time the request let go of the file (writes finish in a thread).
    assert marks == [RESERVE_SEGMENTS, 2 * RESERVE_SEGMENTS]
    assert path.stat().st_size == HEADER_BYTES + RESERVE_SEGMENTS * STRIDE


def test_after_a_failed_reservation_the_resume_seals_no_index_twice(app, pending_upload: str) -> None:
    """The reservation for index 1024 fails (the database went away a
    moment); the request ends as ``resumable.append`` ends it, syncing and
    committing what it wrote. The next request goes on from there with other
    bytes, and seals no index the first one wrote."""
    fails = iter([False, True])

    def commit(session: Session, upload: Upload) -> None:
        if next(fails, False):
            raise RuntimeError("the commit failed")
        session.commit()

    session, upload, held = _resumed(app, pending_upload, commit)
    with session, held as pending:
        header = pending.header
        with pytest.raises(RuntimeError):
            for index in range(RESERVE_SEGMENTS + 1):
                pending.put(index, b"s" * STRIDE)
        pending.save(RESERVE_SEGMENTS * SEGMENT_SIZE, complete=False)
        path = _partial(app, upload)
    written = path.read_bytes()

    session, upload, held = _resumed(app, pending_upload)
    with session, held as pending:
        assert (pending.offset, pending.header) == (RESERVE_SEGMENTS * SEGMENT_SIZE, header)
        for index in range(RESERVE_SEGMENTS, RESERVE_SEGMENTS + 2):
            pending.put(index, b"t" * STRIDE)
        pending.save((RESERVE_SEGMENTS + 2) * SEGMENT_SIZE, complete=False)
    assert reused_nonces(written, path.read_bytes()) == []


def test_an_upload_removed_while_its_request_waited_for_the_file_is_gone(app, pending_upload: str) -> None:
    """The row is read again under the file's lock; removed meanwhile (its
    sender took it out in another tab), the request finds it gone."""
    session, upload, held = _resumed(app, pending_upload)
    with new_session(app) as other:
        other.execute(delete(Upload).where(Upload.id == pending_upload))
        other.commit()
    with session, pytest.raises(UploadGone), held:
        pass


class _RemovedMidway(io.BytesIO):
    """A body during which the upload is removed (its sender took it out in another tab)."""

    def __init__(self, data: bytes, after: int, remove: Callable[[], None]) -> None:
        super().__init__(data)
        self._after, self._remove = after, remove

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def,override]
        if self.tell() >= self._after and self._remove is not None:
            self._remove()
            self._remove = None  # type: ignore[assignment]
        return super().readinto(buffer)


@pytest.mark.parametrize("last", [False, True], ids=["a chunk", "the last chunk"])
def test_an_upload_removed_while_its_body_arrives_is_gone(app, mailbox, last: bool) -> None:
    """The request's commit of what it stored finds the row gone and says so
    (410), rather than telling the client an offset nobody keeps."""
    sender = Sender(app, mailbox)
    sender.personal()
    sender.verify()
    sender.recipients("anna@gemeente.example")
    headers = {"Tus-Resumable": "1.0.0", "X-CSRFToken": sender.upload_token()}
    data = os.urandom(20 * SEGMENT_SIZE)
    location = sender.post("/send/uploads", headers={
        **headers, "Upload-Length": str(len(data) * (1 if last else 2)), "Upload-Metadata": "filename " + base64.b64encode(b"scan.zip").decode(),
    }).headers["Location"]

    def remove() -> None:
        with new_session(app) as other:
            other.execute(delete(Upload))
            other.commit()

    r = sender.client.patch(
        location, base_url="https://portal.example.nl", content_length=len(data),
        input_stream=_RemovedMidway(data, 16 * SEGMENT_SIZE, remove),
        headers={**headers, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"},
    )
    assert r.status_code == 410
    assert sender.client.head(location, base_url="https://portal.example.nl", headers=headers).status_code == 404
    # Its slots are free again: the failed write left no lock (SQLite's) for their release to wait out.
    with new_session(app) as session:
        assert session.scalar(select(func.count()).select_from(UploadLease)) == 0


def test_what_is_put_is_stored_in_order_whatever_its_size(app, pending_upload: str) -> None:
    """Sealed segments are gathered into batches written by a writer
    thread; one larger than a batch (a blob of another segment size) goes
    as a batch of its own, between the others."""
    parts = [b"a" * STRIDE] * 17 + [b"B" * 3_000_000] + [b"c" * STRIDE] * 3 + [b"D" * 2_000_000] + [b"e" * STRIDE]
    session, upload, held = _resumed(app, pending_upload)
    with session, held as pending:
        header = pending.header
        for index, part in enumerate(parts):
            pending.put(index, part)
        pending.save(len(parts) * SEGMENT_SIZE, complete=False)
        path = _partial(app, upload)
    assert path.read_bytes() == header + b"".join(parts)


def test_requests_in_turn_store_their_own_bytes_only(app, pending_upload: str) -> None:
    """The batch buffers go back to a pool and serve the next request: the
    next request's part of a batch is written, never what was left in the
    buffer before it (20 segments: a full batch and a part of one)."""
    stored = b""
    for turn, byte in enumerate(b"xy"):
        session, upload, held = _resumed(app, pending_upload)
        with session, held as pending:
            stored = stored or pending.header
            for index in range(turn * 20, turn * 20 + 20):
                pending.put(index, bytes([byte]) * STRIDE)
            pending.save((turn + 1) * 20 * SEGMENT_SIZE, complete=False)
            stored += bytes([byte]) * STRIDE * 20
            path = _partial(app, upload)
        assert path.read_bytes() == stored


@contextmanager
def _files_limited_to(size: int) -> Iterator[None]:
    """Writes beyond ``size`` bytes of any file fail, as on a full disk (EFBIG, or a short write)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


def test_a_failed_write_commits_nothing_and_the_resume_starts_over(app, pending_upload: str) -> None:
    session, upload, held = _resumed(app, pending_upload)
    with session, held as pending:
        first_header = pending.header
        for index in range(16):  # one batch of writes
            pending.put(index, b"s" * STRIDE)
        with _files_limited_to(HEADER_BYTES + 16 * STRIDE + 100):
            pending.put(16, b"t" * STRIDE)
            with pytest.raises(OSError):
                pending.save(17 * SEGMENT_SIZE, complete=False)
            # What reached the disk of the failed write is unknown: no offset is claimed.
            with pytest.raises(OSError):
                pending.save(16 * SEGMENT_SIZE, complete=False)
        session.refresh(upload)
        assert (upload.offset, upload.reserved_segments) == (0, RESERVE_SEGMENTS)

    session, upload, held = _resumed(app, pending_upload)
    with session, held as pending:
        # Indices up to 16 may be on disk under the old header: a new one, from offset 0.
        assert pending.offset == 0 and pending.header != first_header


def test_a_clean_end_resumes_where_it_stopped_and_cuts_a_torn_write(app, pending_upload: str) -> None:
    session, upload, held = _resumed(app, pending_upload)
    with session, held as pending:
        header = pending.header
        for index in range(2):
            pending.put(index, bytes([index]) * STRIDE)
        pending.save(2 * SEGMENT_SIZE, complete=False)
        path = _partial(app, upload)
    with open(path, "ab") as fh:
        fh.write(b"torn write of a request that died")

    session, upload, held = _resumed(app, pending_upload)
    with session, held as pending:
        assert pending.offset == 2 * SEGMENT_SIZE and pending.header == header
        assert path.read_bytes() == header + b"\0" * STRIDE + b"\1" * STRIDE

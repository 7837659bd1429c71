"""What only an S3 store has to get right: resumable uploads whose state is
in the database, the rule that keeps a nonce from being used twice when a
request dies after sending, small chunks, a store that goes away, and a
wrong store at start-up. Against a real SeaweedFS; the tests shared with the
local store run on both (tests/blobs.py, BOTH_STORES)."""

from __future__ import annotations

import hashlib
import io
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import pytest
import requests
import tomli_w
from sqlalchemy import select, update

from app import db, purge
from app.clock import utcnow
from app.crypto.stream import HEADER_BYTES, SEGMENT_SIZE, TAG_BYTES
from app.models import KeySlot, StoredFile, Transfer, Upload, UploadPart
from app.s3_store import MAX_PARTS, part_segments
from app.settings import ConfigError
from app.storage import StorageUnavailable

from . import blobs
from .live import free_port
from .test_crash_resume import wait_for
from .seaweed import READER_KEY, S3Gate, SeaweedServer
from .test_tus import TUS, TusSender, metadata
from .walker import Sender, multipart, text_of

MiB = 1024 * 1024
STRIDE = SEGMENT_SIZE + TAG_BYTES
# Segments per part of these uploads: 8 MiB of plaintext.
PART = 8 * MiB
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def blob_backend() -> str:
    """Every portal of these tests keeps its blobs in S3."""
    return "s3"


@pytest.fixture
def gate(seaweed: SeaweedServer) -> Iterator[S3Gate]:
    gate = S3Gate(seaweed.s3_port)
    yield gate
    gate.down()


@pytest.fixture
def gated(make_app, gate: S3Gate):  # type: ignore[no-untyped-def]
    """A portal that reaches its bucket through the gate."""
    return make_app({"storage": {"s3_endpoint_url": gate.url}})


def _upload(app) -> Upload:  # type: ignore[no-untyped-def]
    with app.app_context():
        return db.session().scalars(select(Upload)).one()


def _digests(blob: bytes, first: int, count: int) -> bytes:
    """SHA-256 of segments ``first`` .. ``first + count - 1`` of a finished blob."""
    at = HEADER_BYTES + first * STRIDE
    return b"".join(hashlib.sha256(blob[at + i * STRIDE : at + (i + 1) * STRIDE]).digest() for i in range(count))


def _objects(seaweed: SeaweedServer, bucket: str) -> tuple[list[str], list[str]]:
    """Object names and multipart uploads (their ids), straight from the store."""
    client = seaweed.client()
    names = [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]
    uploads = [u["UploadId"] for u in client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]
    return sorted(names), uploads


def _download(sender: Sender, name: str) -> bytes:
    recipient = sender.open_uploaded()
    return recipient.get(recipient.file_links()[name]).data


def test_an_upload_goes_on_through_another_app_server(make_app, mailbox, tmp_path: Path, monkeypatch, seaweed, s3_bucket) -> None:
    """Two app servers share the database, the bucket and the secret key, not a disk."""
    monkeypatch.setenv("KOERIER_SECRET_KEY", "k" * 48)
    shared = {"storage": {"database_url": f"sqlite:///{tmp_path / 'shared.sqlite3'}", "s3_prefix": "koerier/"}}
    first, second = make_app(shared, instance=tmp_path / "node-1"), make_app(shared, instance=tmp_path / "node-2")
    data = os.urandom(PART + 3 * MiB + 99)
    tus = TusSender(first, mailbox).ready()
    location = tus.create(len(data)).headers["Location"]
    # A part and a tail, through the first server.
    assert tus.patch(location, 0, data[: PART + MiB]).headers["Upload-Offset"] == str(PART + MiB)

    tus.restart_on(second)
    assert tus.head(location).headers["Upload-Offset"] == str(PART + MiB)
    done = tus.patch(location, PART + MiB, data[PART + MiB :])
    assert done.status_code == 204 and done.headers["Upload-Offset"] == str(len(data))
    assert _download(tus, "scan.zip") == data
    names, uploads = _objects(seaweed, s3_bucket)
    assert len(names) == 1 and names[0].startswith("koerier/") and uploads == []


def test_small_chunks_progress_through_a_tail(make_app, mailbox, seaweed, s3_bucket) -> None:
    app = make_app()
    marker = b"BSN 123456782 "
    data = marker * (PART // len(marker) + 150_000)  # a part and some 2 MiB
    tus = TusSender(app, mailbox).ready()
    location = tus.create(len(data)).headers["Location"]
    chunk, offset = 256 * 1024, 0
    while offset < len(data):
        r = tus.patch(location, offset, data[offset : offset + chunk])
        assert r.status_code == 204
        assert int(r.headers["Upload-Offset"]) == min(offset + chunk, len(data))
        offset = int(r.headers["Upload-Offset"])
        names = blobs.names(app)
        if offset < len(data):
            # At most one tail at a time (the one before it deleted; none
            # right after a part), and only ciphertext.
            assert len(names) == (offset % PART != 0)
            assert all(".tail-" in name and marker not in blobs.read(app, name) for name in names)
    assert _download(tus, "scan.zip") == data
    [blob] = blobs.names(app)
    assert ".tail-" not in blob and blobs.multipart_uploads(app) == []


class _Outage(io.RawIOBase):
    """A request body that calls ``then`` once ``after`` bytes are read (say, to take the store down)."""

    def __init__(self, data: bytes, after: int, then: Callable[[], object]) -> None:
        super().__init__()
        self.data, self.after, self.then, self.pos = data, after, then, 0
        self.fired = False

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self.pos = len(self.data) + offset if whence == io.SEEK_END else offset
        return self.pos

    def readinto(self, buffer: Any) -> int:
        if self.pos >= self.after and not self.fired:
            self.fired = True
            self.then()
        stop = len(self.data) if self.fired else self.after
        count = min(len(buffer), stop - self.pos)
        buffer[:count] = self.data[self.pos : self.pos + count]
        self.pos += count
        return count


def test_the_store_going_away_mid_upload_is_a_translated_503_and_the_upload_resumes(gated, mailbox, gate: S3Gate) -> None:
    app = gated
    data = os.urandom(2 * PART + MiB)
    tus = TusSender(app, mailbox).ready()
    tus.client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "nl"
    location = tus.create(len(data)).headers["Location"]
    headers = tus.headers(**{"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"})
    # The first part goes up; then the store is gone.
    answer = tus.client.patch(
        location, base_url="https://portal.example.nl", headers=headers,
        input_stream=_Outage(data, PART + MiB, gate.down), content_length=len(data),
    )
    assert answer.status_code == 503 and "Retry-After" in answer.headers
    assert answer.json["error"] == "Het portaal kan op dit moment geen bestanden opslaan. Probeer het zo dadelijk opnieuw."
    # What was committed stays: the first part, unless it was still on its
    # way to the store (sent while the next one is read) when the store went.
    offset = int(tus.head(location).headers["Upload-Offset"])
    assert offset in (0, PART)
    with app.app_context():
        assert db.session().scalars(select(StoredFile)).all() == []

    gate.up()
    done = tus.patch(location, offset, data[offset:])
    assert done.status_code == 204 and done.headers["Upload-Offset"] == str(len(data))
    assert _download(tus, "scan.zip") == data


def _form_upload_cut(app, mailbox, then: Callable[[], object]) -> Sender:  # type: ignore[no-untyped-def]
    """A sender whose form upload of three parts ``then`` interrupts after the first part: refused, nothing kept."""
    sender = Sender(app, mailbox)
    sender.personal()
    sender.verify()
    sender.recipients("anna@gemeente.example")
    body, content_type = multipart([("csrf_token", sender.upload_token()), ("files", ("scan.zip", os.urandom(3 * PART)))])
    refused = sender.client.post(
        "/send/files", base_url="https://portal.example.nl", content_type=content_type,
        input_stream=_Outage(body, PART + MiB, then), content_length=len(body),
    )
    if refused.status_code == 303:
        refused = sender.get(refused.location)
    assert refused.status_code == 503
    assert "The portal cannot store files right now. Please try again in a moment." in text_of(refused)
    with app.app_context():
        assert db.session().scalars(select(StoredFile)).all() == []
    return sender


def test_a_form_upload_with_the_store_gone_is_refused_and_keeps_nothing(gated, mailbox, gate: S3Gate) -> None:
    sender = _form_upload_cut(gated, mailbox, gate.down)
    gate.up()
    assert sender.files([("scan.zip", b"%PDF-1.4 later")], action="upload").status_code == 302


def test_a_form_upload_whose_multipart_upload_is_aborted_meanwhile_is_a_503(make_app, mailbox, seaweed, s3_bucket) -> None:
    """The bucket's lifecycle rule (or a sweep by another portal) may abort
    a form upload's multipart upload while the body still arrives: the
    sender is told to try again, as when the store goes away."""

    def abort_it() -> None:
        client = seaweed.client()
        [upload] = client.list_multipart_uploads(Bucket=s3_bucket)["Uploads"]
        client.abort_multipart_upload(Bucket=s3_bucket, Key=upload["Key"], UploadId=upload["UploadId"])

    _form_upload_cut(make_app(), mailbox, abort_it)
    assert _objects(seaweed, s3_bucket) == ([], [])


def test_a_form_upload_refused_half_way_aborts_its_multipart_upload(make_app, mailbox, seaweed, s3_bucket) -> None:
    app = make_app({"transfer": {"max_total_bytes": 2 * PART + MiB}})
    sender = Sender(app, mailbox)
    sender.personal()
    sender.verify()
    sender.recipients("anna@gemeente.example")
    # Two parts went up before the file passed the limit.
    refused = sender.files([("scan.zip", os.urandom(2 * PART + 2 * MiB))], action="upload")
    assert "the transfer would be larger than" in text_of(refused)
    assert _objects(seaweed, s3_bucket) == ([], [])


def test_parts_are_large_enough_and_ten_thousand_hold_any_upload() -> None:
    for length in (1, PART, 10 * 1024**3, 80 * 1024**3, 81 * 1024**3, 2**50):
        per_part = part_segments(length)
        assert per_part % 128 == 0 and per_part * STRIDE >= 5 * MiB
        assert -(-length // SEGMENT_SIZE) <= MAX_PARTS * per_part
    assert part_segments(10 * 1024**3) == 128


def _held_patch(tus: TusSender, location: str, offset: int, body: bytes) -> tuple[threading.Thread, list[Any]]:
    answers: list[Any] = []
    thread = threading.Thread(target=lambda: answers.append(tus.patch(location, offset, body)))
    thread.start()
    return thread, answers


def _parts_in_store(seaweed: SeaweedServer, bucket: str) -> list[int]:
    client = seaweed.client()
    numbers = []
    for upload in client.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
        parts = client.list_parts(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]).get("Parts", [])
        numbers += [p["PartNumber"] for p in parts]
    return sorted(numbers)


@pytest.mark.parametrize("resent", ["same", "other"])
def test_a_request_that_sent_a_part_but_never_committed_it(gated, mailbox, gate: S3Gate, seaweed, s3_bucket, resent: str) -> None:
    """Part 2 reaches the store, then the request ends before its commit. The
    same bytes sent again go on from part 1; other bytes make the upload
    start over under a new file key, so no nonce covers two plaintexts."""
    app = gated
    data = os.urandom(2 * PART + MiB)
    tus = TusSender(app, mailbox).ready()
    location = tus.create(len(data)).headers["Location"]
    gate.hold(b"partNumber=2")
    thread, answers = _held_patch(tus, location, 0, data)
    wait_for(lambda: gate.held.is_set() and _parts_in_store(seaweed, s3_bucket) == [1, 2], "part 2 in the store")
    gate.down()
    thread.join(timeout=120)
    assert answers[0].status_code == 503
    before = _upload(app)
    # Part 1 is committed; part 2's 128 segments are in flight.
    assert before.offset == PART and before.in_flight is not None and len(before.in_flight) == 128 * 32
    gate.up()

    if resent == "same":
        done = tus.patch(location, PART, data[PART:])
        assert done.status_code == 204 and done.headers["Upload-Offset"] == str(len(data))
        [name] = blobs.names(app)
        blob = blobs.read(app, name)
        # The ciphertext in the blob is the one that went out before, under the same header.
        assert blob[:HEADER_BYTES] == before.header
        assert _digests(blob, 128, 128) == before.in_flight
        assert _download(tus, "scan.zip") == data
        return

    other = os.urandom(len(data))
    restarted = tus.patch(location, PART, other[PART:])
    assert restarted.status_code == 409 and restarted.headers["Upload-Offset"] == "0"
    after = _upload(app)
    assert after.header != before.header and after.offset == 0 and after.multipart_id is None
    assert _objects(seaweed, s3_bucket)[1] == []  # the old multipart upload is aborted
    with app.app_context():
        assert db.session().scalars(select(UploadPart)).all() == []
    done = tus.patch(location, 0, other)
    assert done.status_code == 204
    assert _download(tus, "scan.zip") == other


def test_a_part_goes_up_in_turn_when_no_thread_is_to_be_had(make_app, mailbox, seaweed, s3_bucket, monkeypatch) -> None:
    """A worker shutting down after a reload, or at its process limit, has
    no thread to send a part while the next arrives: it sends it itself,
    and the upload neither fails nor starts over."""
    tus = TusSender(make_app(), mailbox).ready()
    data = os.urandom(2 * PART + MiB)
    location = tus.create(len(data)).headers["Location"]

    def no_thread(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("cannot schedule new futures after interpreter shutdown")

    monkeypatch.setattr(ThreadPoolExecutor, "submit", no_thread)
    done = tus.patch(location, 0, data)
    assert done.status_code == 204 and done.headers["Upload-Offset"] == str(len(data))
    assert _download(tus, "scan.zip") == data


def test_a_request_that_lost_its_lease_commits_and_sends_nothing_more(gated, mailbox, gate: S3Gate, seaweed, s3_bucket) -> None:
    """It stalled past its lease, and a request on another node took the
    upload over: whatever it still holds must not reach the store or the row."""
    app = gated
    data = os.urandom(PART + MiB)
    tus = TusSender(app, mailbox).ready()
    location = tus.create(len(data)).headers["Location"]
    gate.hold(b"partNumber=1")
    thread, answers = _held_patch(tus, location, 0, data)
    wait_for(lambda: gate.held.is_set() and _parts_in_store(seaweed, s3_bucket) == [1], "part 1 in the store")
    with app.app_context():
        session = db.session()
        session.execute(update(Upload).values(busy_by="another-node", busy_until=utcnow() + timedelta(minutes=1)))
        session.commit()
    # The store's answer comes after all (a retry of the part gets through).
    gate.down()
    gate.up()
    thread.join(timeout=120)
    assert answers[0].status_code == 423
    after = _upload(app)
    assert after.offset == 0 and after.busy_by == "another-node"
    with app.app_context():
        assert db.session().scalars(select(UploadPart)).all() == []
    assert _objects(seaweed, s3_bucket)[0] == []  # no tail was sent


def test_a_killed_node_loses_only_the_part_it_had_not_committed(make_live, mailbox, gate: S3Gate, seaweed, s3_bucket) -> None:
    app, server = make_live({"storage": {"s3_endpoint_url": gate.url}})
    sender = Sender(app, mailbox)
    sender.personal()
    sender.verify()
    sender.recipients("anna@gemeente.example")
    tus = {**TUS, "Cookie": sender.cookie_header(), "X-CSRFToken": sender.upload_token()}
    data = os.urandom(3 * PART + 12_345)
    created = requests.post(
        server.url + "/send/uploads", timeout=30,
        headers={**tus, "Upload-Length": str(len(data)), "Upload-Metadata": metadata(filename="scan.zip")},
    )
    url = urljoin(server.url, created.headers["Location"])
    patch = {**tus, "Content-Type": "application/offset+octet-stream"}

    # Parts 1 and 2 are committed; part 3 reaches the store, and the worker dies before its commit.
    gate.hold(b"partNumber=3")

    def doomed() -> None:
        with pytest.raises(requests.ConnectionError):  # its worker is killed
            requests.patch(url, data=data, headers={**patch, "Upload-Offset": "0"}, timeout=120)

    threading.Thread(target=doomed, daemon=True).start()
    wait_for(lambda: gate.held.is_set() and _parts_in_store(seaweed, s3_bucket) == [1, 2, 3], "part 3 in the store")
    old_worker = server.worker_pid()
    os.kill(old_worker, signal.SIGKILL)
    wait_for(lambda: [pid for pid in server.worker_pids() if pid != old_worker], "gunicorn's new worker")
    before = _upload(app)
    assert before.offset == 2 * PART and len(before.in_flight or b"") == 128 * 32

    # The dead worker's lease runs out on its own; until then the upload is busy.
    def resumed() -> requests.Response | None:
        offset = int(requests.head(url, headers=tus, timeout=30).headers["Upload-Offset"])
        answer = requests.patch(url, data=data[offset:], headers={**patch, "Upload-Offset": str(offset)}, timeout=120)
        return None if answer.status_code == 423 else answer

    done = wait_for(resumed, "the dead worker's lease to run out", timeout=120)
    assert done.status_code == 204 and done.headers["Upload-Offset"] == str(len(data))
    [name] = blobs.names(app)
    blob = blobs.read(app, name)
    assert blob[:HEADER_BYTES] == before.header and _digests(blob, 256, 128) == before.in_flight
    recipient = sender.open_uploaded()
    assert recipient.get(recipient.file_links()["scan.zip"]).data == data


def test_unfinished_uploads_leave_no_object_and_no_multipart_upload(make_app, mailbox, seaweed, s3_bucket) -> None:
    app = make_app()
    tus = TusSender(app, mailbox).ready()
    data = os.urandom(PART + MiB)
    locations = [tus.create(2 * PART, name=f"{n}.zip").headers["Location"] for n in ("removed", "abandoned")]
    for location in locations:
        tus.patch(location, 0, data)
    names, uploads = _objects(seaweed, s3_bucket)
    assert len(names) == 2 and len(uploads) == 2  # a tail and a multipart upload each

    # Removed by the sender (tus termination) ...
    assert tus.client.delete(locations[0], base_url="https://portal.example.nl", headers=tus.headers()).status_code == 204
    names, uploads = _objects(seaweed, s3_bucket)
    assert len(names) == 1 and len(uploads) == 1
    # ... and abandoned with its draft.
    later = utcnow() + timedelta(hours=app.config["KOERIER"].transfer.draft_ttl_hours, minutes=1)
    assert purge.run(lambda: db.new_session(app), app.extensions["koerier"], later).drafts_removed == 1
    assert _objects(seaweed, s3_bucket) == ([], [])


def test_an_expiry_the_store_interrupts_is_finished_by_the_next_run(gated, mailbox, gate: S3Gate, seaweed, s3_bucket) -> None:
    app = gated
    Sender(app, mailbox).send(files=[("verslag.pdf", b"%PDF report" * 100)])
    with app.app_context():
        expires = db.session().scalar(select(Transfer.expires_at))

    def run(now):  # type: ignore[no-untyped-def]
        return purge.run(lambda: db.new_session(app), app.extensions["koerier"], now)

    gate.down()
    report = run(expires + timedelta(seconds=1))
    # The expiry and the orphan sweep each wait for the next run.
    assert report.failures == 2 and report.transfers_expired == 0
    with app.app_context():
        assert db.session().scalars(select(KeySlot)).all() == []  # unreadable already
    gate.up()
    assert run(expires + timedelta(minutes=5)).transfers_expired == 1
    assert _objects(seaweed, s3_bucket) == ([], [])


@pytest.mark.parametrize(
    ("change", "setting"),
    [
        ({"s3_bucket": "no-such-bucket"}, "storage.s3_bucket"),
        ({"s3_access_key_id": "somebody-else"}, "storage.s3_access_key_id"),
        ({"s3_secret_access_key": "not-the-secret"}, "storage.s3_secret_access_key"),
        ({"s3_endpoint_url": "http://127.0.0.1:{dead}"}, "storage.s3_endpoint_url"),
        # It reads and lists, which is not enough to take an upload.
        ({"s3_access_key_id": READER_KEY}, "storage.s3_access_key_id"),
    ],
    ids=["bucket", "access key", "secret key", "endpoint", "read-only key"],
)
def test_a_wrong_store_stops_start_up_naming_the_setting(make_app, seaweed, s3_bucket, change: dict[str, str], setting: str) -> None:
    change = {key: value.format(dead=free_port()) for key, value in change.items()}
    with pytest.raises(ConfigError, match=f"^{re.escape(setting)}: "):
        make_app({"storage": {**seaweed.config(s3_bucket), **change}})


def test_the_command_line_names_a_missing_bucket(tmp_path: Path, seaweed, s3_bucket) -> None:
    instance = tmp_path / "instance"
    instance.mkdir()
    (instance / "config.toml").write_text(tomli_w.dumps({"storage": {**seaweed.config(s3_bucket), "s3_bucket": "gone-bucket"}}))
    refused = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "routes"], cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={"PATH": "/usr/bin:/bin", "KOERIER_INSTANCE_PATH": str(instance)},
    )
    assert refused.returncode == 3
    assert "Configuration error: storage.s3_bucket:" in refused.stderr and "gone-bucket" in refused.stderr


def test_the_readiness_check_names_a_store_that_went_away(gated, gate: S3Gate) -> None:
    store = gated.extensions["koerier"].store
    store.check()
    gate.down()
    with pytest.raises(StorageUnavailable, match="^storage.s3_endpoint_url: "):
        store.check()

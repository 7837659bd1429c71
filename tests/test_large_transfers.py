"""Large transfers over real HTTP: a third-party tus client, a dropped
connection, and the server's memory while hundreds of megabytes pass; into
the local store and into S3."""

from __future__ import annotations

import hashlib
import io
import time
import zipfile
from pathlib import Path

import pytest
import requests
from tusclient.client import TusClient

from app.crypto.stream import HEADER_BYTES, SEGMENT_SIZE, TAG_BYTES

from . import blobs
from .live import DroppingProxy, LiveServer, random_file
from .walker import Recipient, Sender, multipart

pytestmark = blobs.BOTH_STORES

MiB = 1024 * 1024


def at_files_step(app, mailbox) -> Sender:  # type: ignore[no-untyped-def]
    sender = Sender(app, mailbox)
    sender.personal()
    sender.verify()
    sender.recipients("anna@gemeente.example")
    return sender


def tus_client(sender: Sender, base: str) -> TusClient:
    return TusClient(base + "/send/uploads", headers={"Cookie": sender.cookie_header(), "X-CSRFToken": sender.upload_token()})


def fetch(server: LiveServer, recipient: Recipient, path: str, **headers: str) -> tuple[str, int]:
    """SHA-256 and length of a download streamed from the live server."""
    digest, size = hashlib.sha256(), 0
    with requests.get(server.url + path, headers={"Cookie": recipient.cookie_header(), **headers}, stream=True, timeout=120) as r:
        assert r.status_code in (200, 206), r.status_code
        assert int(r.headers["Content-Length"]) >= 0
        for block in r.iter_content(MiB):
            digest.update(block)
            size += len(block)
        assert size == int(r.headers["Content-Length"])
    return digest.hexdigest(), size


def test_tuspy_upload_survives_a_dropped_connection(make_live, mailbox, tmp_path: Path) -> None:
    # Two workers: the resumed requests may land on either, and both booted
    # on a fresh database at the same moment.
    app, server = make_live(workers=2)
    assert len(server.worker_pids()) == 2
    source = tmp_path / "dossier.zip"
    expected = random_file(source, 24 * MiB + 777)
    sender = at_files_step(app, mailbox)
    proxy = DroppingProxy(server.port, drop_after=9 * MiB)
    client = tus_client(sender, proxy.url)

    first = client.uploader(file_path=str(source), chunk_size=16 * MiB, metadata={"filename": "dossier.zip"}, retries=0)
    with pytest.raises(Exception):
        first.upload()
    assert proxy.dropped and first.url

    # The server keeps every whole segment that arrived before the drop.
    stored = _settled_offset(first.url.replace(proxy.url, server.url), sender)
    assert 0 < stored < source.stat().st_size and stored % SEGMENT_SIZE == 0

    resumed = client.uploader(file_path=str(source), url=first.url, chunk_size=16 * MiB, retries=3, retry_delay=1)
    assert resumed.offset == stored
    resumed.upload()
    proxy.close()

    recipient = sender.open_uploaded()
    digest, size = fetch(server, recipient, recipient.file_links()["dossier.zip"])
    assert (digest, size) == (expected, source.stat().st_size)


def _settled_offset(url: str, sender: Sender) -> int:
    """The stored offset once the interrupted request has finished on the server."""
    headers = {"Tus-Resumable": "1.0.0", "Cookie": sender.cookie_header()}
    seen, deadline = -1, time.monotonic() + 20
    while time.monotonic() < deadline:
        offset = int(requests.head(url, headers=headers, timeout=10).headers["Upload-Offset"])
        if offset == seen and offset > 0:
            return offset
        seen = offset
        time.sleep(0.5)
    raise AssertionError("the upload's offset never settled")


class MultipartBody(io.RawIOBase):
    """A browser's multipart upload of one file, read from disk as it is sent."""

    def __init__(self, token: str, path: Path) -> None:
        marker = b"\0file content goes here\0"
        body, self.content_type = multipart([("csrf_token", token), ("files", (path.name, marker)), ("action", "add")])
        prefix, suffix = body.split(marker)
        self.parts = [io.BytesIO(prefix), open(path, "rb"), io.BytesIO(suffix)]
        self.length = len(prefix) + path.stat().st_size + len(suffix)

    def __len__(self) -> int:
        return self.length

    def read(self, size: int = -1) -> bytes:
        while self.parts:
            data = self.parts[0].read(size if size > 0 else MiB)
            if data:
                return data
            self.parts.pop(0).close()
        return b""


def upload_by_form(server: LiveServer, sender: Sender, path: Path) -> None:
    body = MultipartBody(sender.upload_token(), path)
    r = requests.post(
        server.url + "/send/files", data=body,
        headers={"Cookie": sender.cookie_header(), "Content-Type": body.content_type},
        allow_redirects=False, timeout=300,
    )
    assert r.status_code == 302, r.text[:500]


def upload_by_tus(server: LiveServer, sender: Sender, path: Path) -> None:
    uploader = tus_client(sender, server.url).uploader(file_path=str(path), chunk_size=32 * MiB, metadata={"filename": path.name})
    uploader.upload()


@pytest.mark.parametrize("upload", [upload_by_form, upload_by_tus], ids=["form", "tus"])
def test_server_memory_does_not_grow_with_the_size(make_live, mailbox, tmp_path: Path, upload) -> None:  # type: ignore[no-untyped-def]
    app, server = make_live()
    peaks = {}
    for size in (64 * MiB, 256 * MiB):
        source = tmp_path / f"scan-{size // MiB}.zip"
        expected = random_file(source, size)
        sender = at_files_step(app, mailbox)
        server.reset_peak_rss()
        upload(server, sender, source)
        recipient = sender.open_uploaded()
        assert fetch(server, recipient, recipient.file_links()[source.name]) == (expected, size)
        assert fetch(server, recipient, "/download/all")[1] > size
        peaks[size] = server.peak_rss()
        source.unlink()
    # Everything streams: four times the bytes, the same memory. Buffering
    # would add 192 MiB; the margin is for the allocator's per-thread arenas,
    # whose size depends on which threads served which request.
    assert peaks[256 * MiB] < peaks[64 * MiB] + 16 * MiB, peaks
    # Into S3, boto3's client (S3's service model) takes some 30 MB of a
    # worker, and a running upload two parts (8 MiB each: one on its way to
    # the store while the next fills) beside its segment.
    s3 = app.config["KOERIER"].storage.backend == "s3"
    assert peaks[256 * MiB] < (150 + 50 * s3) * 1000 * 1000, peaks


def test_streamed_zip_opens_and_matches(make_live, mailbox, tmp_path: Path) -> None:
    app, server = make_live()
    sender = at_files_step(app, mailbox)
    originals = {}
    for name, size in (("a.pdf", 0), ("b.zip", 3 * SEGMENT_SIZE), ("c.zip", 5 * MiB + 3)):
        path = tmp_path / name
        random_file(path, size)
        originals[name] = path.read_bytes()
        upload_by_tus(server, sender, path)
    recipient = sender.open_uploaded()
    with requests.get(server.url + "/download/all", headers={"Cookie": recipient.cookie_header()}, timeout=60) as r:
        assert int(r.headers["Content-Length"]) == len(r.content)
        archive = zipfile.ZipFile(io.BytesIO(r.content))
    assert archive.testzip() is None
    assert {i.filename: archive.read(i) for i in archive.infolist()} == originals



def test_a_tampered_segment_cuts_the_download_before_its_bytes(make_live, mailbox, tmp_path: Path) -> None:
    app, server = make_live()
    source = tmp_path / "scan.zip"
    random_file(source, 16 * SEGMENT_SIZE)
    sender = at_files_step(app, mailbox)
    upload_by_tus(server, sender, source)
    recipient = sender.open_uploaded()
    [name] = blobs.names(app)
    blob = bytearray(blobs.read(app, name))
    blob[HEADER_BYTES + 10 * (SEGMENT_SIZE + TAG_BYTES) + 100] ^= 1  # inside the eleventh segment
    blobs.write(app, name, bytes(blob))
    received = bytearray()
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        with requests.get(
            server.url + recipient.file_links()["scan.zip"], headers={"Cookie": recipient.cookie_header()}, stream=True, timeout=60
        ) as r:
            assert int(r.headers["Content-Length"]) == source.stat().st_size
            for block in r.iter_content(SEGMENT_SIZE):
                received += block
    # The client sees a cut-off download; nothing of the damaged segment or after it came.
    assert 0 < len(received) <= 10 * SEGMENT_SIZE
    assert bytes(received) == source.read_bytes()[: len(received)]

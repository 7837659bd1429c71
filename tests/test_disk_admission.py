"""The free-disk watermark is a reservation, not a check, on a real small disk.

The attack: parallel resumable uploads that each fit on the disk, but not
together. Each creation compared the free space of the moment with its own
length, so all passed, and their bytes filled the disk to zero (SQLite:
"database or disk is full", 500s for everyone). Here the blob store lives
on a 24 MiB tmpfs with a 4 MiB watermark, served by gunicorn. (Local store
only: a bucket has no disk to measure, and the watermark does not apply.)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from .rawhttp import HANG, Held
from .test_upload_limits import MiB, Uploader
from .walker import multipart

DISK = 24 * MiB
WATERMARK = 4 * MiB
SHORT = "The portal is short of storage space right now. Please try again later."


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    options = f"size={DISK},mode=0700"
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount)], capture_output=True)
    if done.returncode:
        pytest.fail(
            f"a small file system cannot be mounted here ({done.stderr.decode().strip()}): these tests need root "
            "to mount a tmpfs (CI runs as root); elsewhere deselect tests/test_disk_admission.py",
            pytrace=False,
        )
    yield mount
    subprocess.run(["umount", "--lazy", str(mount)], check=True)


@pytest.fixture
def on_small_disk(small_disk: Path, make_live, mailbox) -> Callable[..., Uploader]:  # type: ignore[no-untyped-def]
    """A live server whose blob store is the small disk, and a verified sender at its files step."""

    def start(database_url: str = "", **server: int) -> Uploader:
        config = {
            "storage": {"blob_dir": str(small_disk), "min_free_bytes": WATERMARK, "database_url": database_url},
            "limits": {"concurrent_uploads_per_sender": 10, "concurrent_uploads_per_ip": 20},
        }
        app, live = make_live(config, **server)
        return Uploader(app, mailbox, live)

    return start


def free(disk: Path) -> int:
    return shutil.disk_usage(disk).free


def in_parallel(calls: list[Callable[[], requests.Response]]) -> list[requests.Response]:
    """The calls, their requests leaving together from parallel threads."""
    results: list[requests.Response | None] = [None] * len(calls)
    barrier = threading.Barrier(len(calls))

    def run(i: int) -> None:
        barrier.wait()
        results[i] = calls[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r is not None for r in results)
    return results  # type: ignore[return-value]


def test_parallel_uploads_never_fill_the_disk(on_small_disk, small_disk: Path, database_url: str) -> None:
    jan = on_small_disk(database_url, workers=2, threads=8)
    # Six of 6 MiB at once: three fit above the watermark, whichever worker
    # decides; never more. (One fewer when an admission meets a creation
    # between committing its upload and dropping its claim, which it then
    # counts twice: on the safe side.)
    created = in_parallel([lambda i=i: jan.create(6 * MiB, f"scan{i}.zip") for i in range(6)])
    admitted = [r for r in created if r.status_code == 201]
    refused = [r for r in created if r.status_code != 201]
    answers = [(r.status_code, r.text[:200]) for r in created]
    assert len(admitted) in (2, 3), answers
    assert all(r.status_code == 507 and r.json()["error"] == SHORT for r in refused), answers

    # What was admitted is stored, all at once, and the disk keeps its watermark.
    data = os.urandom(6 * MiB)
    paths = [r.headers["Location"].removeprefix(jan.server.url) for r in admitted]
    patched = in_parallel([lambda p=p: jan.patch(p, 0, data) for p in paths])
    assert [r.status_code for r in patched] == [204] * len(admitted)
    assert free(small_disk) >= WATERMARK
    # Nothing lost for good: with the claims gone, what fits is admitted, up to three in all.
    later = [jan.create(6 * MiB).status_code for _ in range(4 - len(admitted))]
    assert later == [201] * (3 - len(admitted)) + [507]


def test_a_form_upload_counts_what_resumable_uploads_were_promised(on_small_disk, small_disk: Path) -> None:
    jan = on_small_disk()
    paths = [jan.new_upload(6 * MiB) for _ in range(3)]  # promised, nothing written yet
    page = jan.form([("scan.pdf", os.urandom(5 * MiB))], message="Zie bijlage")
    assert page.status_code == 507
    assert SHORT in page.text and "Zie bijlage" in page.text

    for path in paths:
        assert jan.patch(path, 0, os.urandom(6 * MiB)).status_code == 204
    assert free(small_disk) >= WATERMARK


def test_a_running_form_upload_holds_its_room(on_small_disk, small_disk: Path) -> None:
    jan = on_small_disk()
    marker = b"\0the file\0"
    body, content_type = multipart([("csrf_token", jan.token), ("files", ("groot.zip", marker)), ("action", "upload")])
    head, tail = body.split(marker)
    content = os.urandom(12 * MiB)
    headers = {
        "Cookie": jan.sender.cookie_header(), "Content-Type": content_type,
        "Content-Length": str(len(head) + len(content) + len(tail)),
    }
    post = Held(jan.server.port, "POST", "/send/files", headers, head + content[:MiB])
    try:
        # Once the server writes the file, its body's room is claimed.
        deadline = time.monotonic() + HANG
        while not list(small_disk.rglob("*.partial")):
            assert time.monotonic() < deadline, "the form upload never started"
            time.sleep(0.05)
        refused = jan.create(12 * MiB)
        assert refused.status_code == 507 and refused.json()["error"] == SHORT

        assert post.send(content[MiB:] + tail)
        assert post.answer().status == 302
    finally:
        post.close()
    # The claim went with its request; what it stored counts from now on.
    assert jan.create(6 * MiB).status_code == 201
    assert jan.create(6 * MiB).status_code == 507


def test_an_admitted_upload_stops_only_when_the_disk_really_lacks_its_rest(on_small_disk, small_disk: Path) -> None:
    jan = on_small_disk()
    path = jan.new_upload(6 * MiB)
    data = os.urandom(6 * MiB)
    filler = small_disk / "filler"
    # Something else takes the disk: below the watermark beside the
    # upload's promise, but with room for its bytes still.
    filler.write_bytes(b"\0" * (15 * MiB))
    assert jan.patch(path, 0, data[: 3 * MiB]).status_code == 204

    with open(filler, "ab") as fh:
        fh.write(b"\0" * (5 * MiB))
    assert free(small_disk) < 3 * MiB
    refused = jan.patch(path, 3 * MiB, data[3 * MiB:])
    assert refused.status_code == 507 and refused.json()["error"] == SHORT
    assert jan.offset(path) == 3 * MiB

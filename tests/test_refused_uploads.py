"""A refused upload is answered without its body ever being parsed.

The attack: while a sender's one upload slot is held, a plain form post of
a file arrives and is refused (429). If anything in the refusal then asks
for ``request.form``, Werkzeug parses the whole body first: the file's
plaintext spools into a temporary file, under the upload's raised body
limit, without a lease or a read timeout, and the thread waits for a body
the client may never finish. Over real HTTP against gunicorn.
"""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest
import requests
from sqlalchemy import func, select

from app import db
from app.upload_limits import UploadLease

from .live import LiveServer
from .rawhttp import HANG, Answer, Held
from .test_upload_limits import MiB, Uploader
from .walker import Sender, multipart, text_of


def on_disk(server: LiveServer, tmpdir: Path, marker: bytes) -> list[str]:
    """Files that hold ``marker``: in the server's temporary folder, and any
    file a worker has open (a spooled part is unlinked at once, so only
    /proc shows it)."""
    candidates = [p for p in tmpdir.rglob("*") if p.is_file()]
    for pid in server.worker_pids():
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                if stat.S_ISREG(fd.stat().st_mode):
                    candidates.append(fd)
            except OSError:
                pass  # closed meanwhile
    found = []
    for path in candidates:
        try:
            with open(path, "rb") as fh:
                tail = b""
                while chunk := fh.read(MiB):
                    if marker in tail + chunk:
                        found.append(f"{path} -> {os.path.realpath(path)}")
                        break
                    tail = chunk[-len(marker):]
        except OSError:
            pass  # closed meanwhile
    return found


@pytest.fixture
def busy_sender(make_live, mailbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """A sender whose one upload slot is held by a running resumable upload;
    the server's temporary folder is a folder of the test's own."""
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmpdir))
    limits = {"concurrent_uploads_per_sender": 1, "upload_read_timeout_seconds": 120}
    app, server = make_live({"limits": limits}, threads=4)
    jan = Uploader(app, mailbox, server)
    running = Held(server.port, "PATCH", jan.new_upload(MiB), jan.patch_headers(0, MiB), b"x")
    deadline = time.monotonic() + HANG
    with app.app_context():
        while not db.session().scalar(select(func.count()).select_from(UploadLease)):
            assert time.monotonic() < deadline, "the running upload never took its slot"
            time.sleep(0.05)
    yield jan, tmpdir
    running.close()


def shown(jan: Uploader, answer: Answer) -> requests.Response:
    """The page a browser shows for ``answer``: a refusal redirects to it, with the session cookie it set."""
    assert answer.status == 303 and answer.headers["location"] == "/send/files"
    session = answer.headers["set-cookie"].split(";", 1)[0]
    name = session.split("=", 1)[0]
    cookies = [c for c in jan.sender.cookie_header().split("; ") if not c.startswith(name + "=")] + [session]
    return requests.get(jan.server.url + "/send/files", headers={"Cookie": "; ".join(cookies), "Accept-Language": "en"}, timeout=HANG)


def held_form_post(jan: Uploader, marker: bytes) -> Held:
    """A form post of a 2 MiB file that starts with ``marker``, its last bytes held back."""
    content = marker + os.urandom(2 * MiB)
    body, content_type = multipart([
        ("csrf_token", jan.token), ("files", ("scan.zip", content)), ("message", "Zie bijlage"), ("action", "next"),
    ])
    headers = {
        "Cookie": jan.sender.cookie_header(), "Content-Type": content_type, "Content-Length": str(len(body)),
        "Accept-Language": "en",
    }
    post = Held(jan.server.port, "POST", "/send/files", headers)
    # Refused, the server stops reading: what is still being sent may meet a reset.
    post.send(body[:-100])
    return post


def test_a_refused_form_upload_is_answered_unread_and_never_spooled(busy_sender) -> None:
    jan, tmpdir = busy_sender
    marker = b"PLAINTEXT-" + os.urandom(16).hex().encode()
    post = held_form_post(jan, marker)
    try:
        deadline = time.monotonic() + HANG
        while not post.answered(0.2):
            assert not on_disk(jan.server, tmpdir, marker), "the refused file's plaintext is on disk"
            assert time.monotonic() < deadline, "no answer until the whole body is sent"
        page = shown(jan, post.answer())
        assert page.status_code == 429
        assert "Too many uploads or virus checks are running at the same time" in page.text
        assert not on_disk(jan.server, tmpdir, marker)
    finally:
        post.close()


def test_refused_form_uploads_do_not_hold_threads(busy_sender) -> None:
    # Each post that waited for its body would hold one of the 4 threads.
    jan, _ = busy_sender
    posts = [held_form_post(jan, b"PLAINTEXT") for _ in range(12)]
    try:
        assert requests.get(jan.server.url + "/help", timeout=30).status_code == 200
        # Each is refused: sent back to the files page, which says why (see above).
        for post in posts:
            answer = post.answer()
            assert answer.status == 303 and answer.headers["location"] == "/send/files"
    finally:
        for post in posts:
            post.close()


def test_a_form_upload_too_large_stays_on_the_files_step(make_app, mailbox) -> None:
    # Refused on its declared length, unread: the sender sees why, with the
    # message saved before (the one typed beside the files is in the body).
    app = make_app({"transfer": {"max_total_bytes": 1000}})
    sender = Sender(app, mailbox)
    sender.personal()
    sender.verify()
    sender.recipients("anna@gemeente.example")
    assert sender.files([], message="Eerder bewaard", action="upload").status_code == 302
    r = sender.files([("groot.zip", b"z" * (3 * MiB))], message="Nieuw getypt", action="upload")
    assert r.status_code == 413
    page = text_of(r)
    assert "The files are larger than 1.0 kB in total." in page
    assert "Eerder bewaard" in page and 'action="/send/files"' in page

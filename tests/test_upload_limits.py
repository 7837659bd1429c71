"""Denial of service by a verified sender, over real HTTP against gunicorn.

Slow and stalled upload bodies, many uploads at once, endless drafts, a
sender's stored bytes, and a full disk: each attack as a client would make
it, with the short limits of a test configuration.
"""

from __future__ import annotations

import base64
import hashlib
import html
import os
import threading
import time
from urllib.parse import urlsplit

import requests
from sqlalchemy import func, select

from app import create_app, db, upload_limits
from app.crypto.stream import SEGMENT_SIZE
from app.models import Draft, StoredFile, Upload

from .live import LiveServer
from .rawhttp import HANG, Held
from .walker import Person, Sender, multipart

MiB = 1024 * 1024


class Uploader:
    """A verified sender at the files step, uploading over HTTP to the live server."""

    def __init__(  # type: ignore[no-untyped-def]
        self, app, mailbox, server: LiveServer, email: str = "jan@zorg.example"
    ) -> None:
        self.sender = Sender(app, mailbox, Person(email=email))
        self.sender.personal()
        self.sender.verify()
        self.sender.recipients("anna@gemeente.example")
        self.server = server
        self.token = self.sender.upload_token()
        self.headers = {
            "Tus-Resumable": "1.0.0", "Cookie": self.sender.cookie_header(), "X-CSRFToken": self.token,
            "Accept-Language": "en",
        }

    def create(self, length: int, name: str = "scan.zip") -> requests.Response:
        metadata = "filename " + base64.b64encode(name.encode()).decode()
        headers = {**self.headers, "Upload-Length": str(length), "Upload-Metadata": metadata}
        return requests.post(self.server.url + "/send/uploads", headers=headers, timeout=HANG)

    def new_upload(self, length: int, name: str = "scan.zip") -> str:
        r = self.create(length, name)
        assert r.status_code == 201, r.text
        return urlsplit(r.headers["Location"]).path

    def patch_headers(self, offset: int, length: int) -> dict[str, str]:
        return {
            **self.headers, "Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream",
            "Content-Length": str(length),
        }

    def patch(self, path: str, offset: int, data: bytes) -> requests.Response:
        headers = self.patch_headers(offset, len(data))
        return requests.patch(self.server.url + path, data=data, headers=headers, timeout=HANG)

    def offset(self, path: str) -> int:
        return int(requests.head(self.server.url + path, headers=self.headers, timeout=HANG).headers["Upload-Offset"])

    def form(self, files: list[tuple[str, bytes]], message: str = "", action: str = "upload") -> requests.Response:
        parts: list[tuple[str, str | tuple[str, bytes]]] = [("csrf_token", self.token)]
        parts += [("files", file) for file in files] + [("message", message), ("action", action)]
        body, content_type = multipart(parts)
        return self.sender.follow_refusal(requests.post(
            self.server.url + "/send/files", data=body,
            headers={"Cookie": self.sender.cookie_header(), "Content-Type": content_type, "Accept-Language": "en"},
            allow_redirects=False, timeout=HANG,
        ))


def answers(held: list[Held], count: int, within: float = HANG) -> list[Held]:
    """Waits until ``count`` of the requests are answered; those, or fails."""
    deadline = time.monotonic() + within
    while True:
        done = [h for h in held if h.answered()]
        if len(done) >= count:
            return done
        assert time.monotonic() < deadline, f"{len(done)} of {len(held)} requests answered, {count} expected"
        time.sleep(0.1)


def start_at_once(requests_to_open: list[tuple[Uploader, str]], length: int) -> list[Held]:
    """PATCH requests whose heads (and one body byte) leave together from parallel threads."""
    held: list[Held | None] = [None] * len(requests_to_open)
    barrier = threading.Barrier(len(requests_to_open))

    def run(i: int, uploader: Uploader, path: str) -> None:
        barrier.wait()
        held[i] = Held(uploader.server.port, "PATCH", path, uploader.patch_headers(0, length), b"x")

    threads = [threading.Thread(target=run, args=(i, *r)) for i, r in enumerate(requests_to_open)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [h for h in held if h is not None]


def test_slow_uploads_do_not_starve_the_other_pages(make_live, mailbox) -> None:
    # The attack: many uploads that trickle a byte now and then, never idle
    # long enough for the read timeout, until no thread is left for pages.
    limits = {"concurrent_uploads_per_sender": 2, "concurrent_uploads_per_ip": 3, "upload_read_timeout_seconds": 5}
    app, server = make_live({"limits": limits}, threads=4)
    jan = Uploader(app, mailbox, server)
    paths = [jan.new_upload(MiB) for _ in range(12)]
    held = [Held(server.port, "PATCH", path, jan.patch_headers(0, MiB), b"x") for path in paths]
    stop = threading.Event()

    def trickle() -> None:
        while not stop.wait(2):
            for h in held:
                h.send(b"x")

    threading.Thread(target=trickle, daemon=True).start()
    try:
        assert requests.get(server.url + "/help", timeout=30).status_code == 200
        refused = answers(held, 10)
        assert all(h.answer().status == 429 for h in refused)
        assert len(refused) == 10
    finally:
        stop.set()
        for h in held:
            h.close()


def test_a_stalled_upload_is_cut_and_keeps_its_progress(make_live, mailbox) -> None:
    app, server = make_live({"limits": {"upload_read_timeout_seconds": 2}})
    jan = Uploader(app, mailbox, server)
    data = os.urandom(3 * MiB + 5)
    path = jan.new_upload(len(data))
    sent = 2 * MiB + 100_000
    stalled = Held(server.port, "PATCH", path, jan.patch_headers(0, len(data)), data[:sent])
    # Then nothing more: the server ends the request by itself.
    assert stalled.answer().status == 400
    stalled.close()

    offset = jan.offset(path)
    assert 0 < offset <= sent and offset % SEGMENT_SIZE == 0
    assert jan.patch(path, offset, data[offset:]).status_code == 204
    recipient = jan.sender.open_uploaded()
    downloaded = recipient.get(recipient.file_links()["scan.zip"]).data
    assert hashlib.sha256(downloaded).digest() == hashlib.sha256(data).digest()


def test_a_stalled_form_upload_is_cut_and_stores_nothing(make_live, mailbox) -> None:
    app, server = make_live({"limits": {"upload_read_timeout_seconds": 2}})
    jan = Uploader(app, mailbox, server)
    marker = b"\0the file\0"
    body, content_type = multipart([("csrf_token", jan.token), ("files", ("scan.zip", marker)), ("action", "upload")])
    head, tail = body.split(marker)
    length = len(head) + MiB + len(tail)
    headers = {"Cookie": jan.sender.cookie_header(), "Content-Type": content_type, "Content-Length": str(length)}
    stalled = Held(server.port, "POST", "/send/files", headers, head + os.urandom(300_000))
    assert stalled.answer().status == 400
    stalled.close()
    with app.app_context():
        assert db.session().scalar(select(func.count()).select_from(StoredFile)) == 0
    assert not [p for p in app.extensions["koerier"].store.root.rglob("*") if p.is_file()]


def test_parallel_upload_starts_never_pass_the_sender_cap(make_live, mailbox) -> None:
    limits = {"concurrent_uploads_per_sender": 3, "concurrent_uploads_per_ip": 100}
    app, server = make_live({"limits": limits}, workers=2, threads=12)
    jan = Uploader(app, mailbox, server)
    held = start_at_once([(jan, jan.new_upload(SEGMENT_SIZE)) for _ in range(20)], SEGMENT_SIZE)

    refused = answers(held, 17)
    for h in refused:
        answer = h.answer()
        assert answer.status == 429
        assert "Too many uploads or virus checks are running at the same time" in answer.body.decode()
        assert int(answer.headers["retry-after"]) > 0
    running = [h for h in held if h not in refused]
    assert len(running) == 3
    for h in running:
        assert h.send(os.urandom(SEGMENT_SIZE - 1))
        assert h.answer().status == 204
    for h in held:
        h.close()
    # Every slot is free again once its upload ended.
    for path in [jan.new_upload(100) for _ in range(3)]:
        assert jan.patch(path, 0, os.urandom(100)).status_code == 204


def test_an_answer_given_before_the_body_is_read_closes_the_connection(make_live, mailbox) -> None:
    """The server reads no more of a refused body and closes the connection
    after its answer. Without "Connection: close" in that answer a client
    kept the connection for its next request (a redirect's GET), and when
    it sent that before the close reached it, the request was dropped
    unanswered (a flaky "connection aborted" for the sender)."""
    app, server = make_live({"limits": {"concurrent_uploads_per_sender": 1}})
    jan = Uploader(app, mailbox, server)
    paths = [jan.new_upload(MiB) for _ in range(2)]
    held = [Held(server.port, "PATCH", path, jan.patch_headers(0, MiB), b"x") for path in paths]
    try:
        [refused] = answers(held, 1)
        [running] = [h for h in held if h is not refused]
        answer = refused.answer()
        assert answer.status == 429 and answer.headers["connection"] == "close"
        # An answer after the whole body keeps the connection.
        assert running.send(os.urandom(MiB - 1))
        answer = running.answer()
        assert answer.status == 204 and answer.headers.get("connection") != "close"
    finally:
        for h in held:
            h.close()


def test_parallel_upload_starts_never_pass_the_network_cap(make_live, mailbox) -> None:
    limits = {"concurrent_uploads_per_sender": 3, "concurrent_uploads_per_ip": 5}
    app, server = make_live({"limits": limits}, workers=2, threads=12)
    senders = [Uploader(app, mailbox, server, f"{name}@zorg.example") for name in ("jan", "piet", "kees")]
    held = start_at_once([(s, s.new_upload(SEGMENT_SIZE)) for s in senders for _ in range(7)], SEGMENT_SIZE)

    refused = answers(held, 16)
    assert all(h.answer().status == 429 for h in refused)
    running = [h for h in held if h not in refused]
    assert len(running) == 5
    # No sender holds more than their own cap within the network's.
    for i in range(3):
        assert len([h for h in running if held.index(h) // 7 == i]) <= 3
    for h in running:
        h.send(os.urandom(SEGMENT_SIZE - 1))
        assert h.answer().status == 204
        h.close()


def upload_one(app, uploader: Uploader) -> str:  # type: ignore[no-untyped-def]
    """A small file into the uploader's draft; returns the draft's id."""
    path = uploader.new_upload(100)
    assert uploader.patch(path, 0, os.urandom(100)).status_code == 204
    with app.app_context():
        return db.session().get(StoredFile, path.rsplit("/", 1)[-1]).draft_id


def test_a_senders_drafts_beyond_the_cap_go_and_nobody_elses(make_live, mailbox) -> None:
    app, server = make_live({"limits": {"open_drafts_per_sender": 2}})
    oldest = upload_one(app, Uploader(app, mailbox, server))
    older = upload_one(app, Uploader(app, mailbox, server))
    # Mallory, verified for her own address, uploads and then puts Jan's
    # address on her draft; another browser of hers types Jan's address.
    mallory = Uploader(app, mailbox, server, "mallory@evil.example")
    hers = upload_one(app, mallory)
    assert mallory.sender.personal(email="jan@zorg.example").status_code == 302
    assert Sender(app, mailbox).personal().status_code == 302
    with app.app_context():
        before = set(db.session().scalars(select(Draft.id)))
        oldest_blob = db.session().scalar(select(StoredFile.blob_key).where(StoredFile.draft_id == oldest))
    assert len(before) == 4 and {oldest, older, hers} < before

    # Jan's third draft starts uploading: his least recently used one goes.
    newest = upload_one(app, Uploader(app, mailbox, server))
    with app.app_context():
        after = set(db.session().scalars(select(Draft.id)))
    assert after == before - {oldest} | {newest}
    assert not list(app.extensions["koerier"].store.root.rglob(oldest_blob + "*"))


def test_a_senders_drafts_hold_at_most_their_quota(make_live, mailbox) -> None:
    app, server = make_live({"transfer": {"max_total_bytes": 2 * MiB}, "limits": {"draft_bytes_per_sender": 3 * MiB}})
    first = Uploader(app, mailbox, server)
    path = first.new_upload(2 * MiB)
    assert first.patch(path, 0, os.urandom(2 * MiB)).status_code == 204

    # Another draft of the same sender, by the resumable endpoint...
    second = Uploader(app, mailbox, server)
    refused = second.create(2 * MiB, "groot.zip")
    assert refused.status_code == 413
    over = "was not added: your unfinished transfers would hold more than 3.1 MB."
    assert refused.json()["error"] == f"“groot.zip” {over}"
    running = second.new_upload(MiB)  # what is left; announced, so it counts while it runs

    # ... and by the form.
    third = Uploader(app, mailbox, server)
    page = third.form([("scan.pdf", b"%PDF" * 100)], message="Zie bijlage")
    assert page.status_code == 422
    assert f"“scan.pdf” {over}" in html.unescape(page.text)
    assert "Zie bijlage" in page.text
    with app.app_context():
        assert db.session().scalar(select(func.count()).select_from(StoredFile)) == 1
        assert db.session().get(Upload, running.rsplit("/", 1)[-1]) is not None


def test_uploads_stop_above_the_disk_watermark(make_live, mailbox) -> None:
    app, server = make_live({"storage": {"min_free_bytes": 2**59}})
    jan = Uploader(app, mailbox, server)
    message = "The portal is short of storage space right now. Please try again later."

    created = jan.create(1000)
    assert created.status_code == 507 and created.json()["error"] == message

    page = jan.form([("scan.pdf", b"%PDF" * 100)], message="Zie bijlage")
    assert page.status_code == 507
    assert message in page.text and "Zie bijlage" in page.text
    # A post without files needs no space: the message is saved.
    assert jan.form([], message="Zie bijlage", action="upload").status_code == 302

    # An upload admitted while there was room goes on: its bytes were promised.
    roomy = create_app({"storage": {"min_free_bytes": 0}}, instance_path=server.instance)
    roomy.config["TESTING"] = True
    other = Sender(roomy, mailbox, Person(email="piet@zorg.example"))
    other.personal()
    other.verify()
    other.recipients("anna@gemeente.example")
    token = other.upload_token()
    headers = {"Tus-Resumable": "1.0.0", "X-CSRFToken": token, "Upload-Length": "1000"}
    path = urlsplit(other.post("/send/uploads", headers=headers).location).path
    r = requests.patch(
        server.url + path, data=b"x" * 1000, timeout=HANG,
        headers={"Tus-Resumable": "1.0.0", "X-CSRFToken": token, "Cookie": other.cookie_header(),
                 "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream", "Accept-Language": "en"},
    )
    assert r.status_code == 204
    with app.app_context():
        assert db.session().scalar(select(func.count()).select_from(StoredFile)) == 1


def test_a_draft_spared_for_its_running_upload_goes_at_the_next_chunk(make_live, mailbox) -> None:
    """The discard spares a draft with an upload running; once that upload
    ends, the next chunk into any of the sender's drafts lets it go, so the
    sender is not left over the cap for as long as they keep uploading."""
    app, server = make_live({"limits": {"open_drafts_per_sender": 2}})
    oldest = upload_one(app, Uploader(app, mailbox, server))
    older = upload_one(app, Uploader(app, mailbox, server))
    # An upload into the oldest draft is still running (its slot is held)
    # when the sender's third draft takes its first files: the oldest stays.
    held = [(upload_limits.subject_key("uploads-sender", "jan@zorg.example"), 4)]
    with db.new_session(app) as session:
        assert upload_limits.claim_leases(session, "running-upload", oldest, held)
    newest_uploader = Uploader(app, mailbox, server)
    newest = upload_one(app, newest_uploader)
    path = newest_uploader.new_upload(100, "second.zip")
    with app.app_context():
        assert {oldest, older, newest} <= set(db.session().scalars(select(Draft.id)))
    with db.new_session(app) as session:
        upload_limits.release_leases(session, "running-upload")

    # The next chunk, into the newest draft (adopted already).
    assert newest_uploader.patch(path, 0, os.urandom(100)).status_code == 204
    with app.app_context():
        assert set(db.session().scalars(select(Draft.id))) == {older, newest}

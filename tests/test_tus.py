"""The resumable upload endpoint (tus 1.0), request by request, on either store."""

from __future__ import annotations

import base64
import errno
import hashlib
import io
import os
import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from app import db, purge
from app.clock import utcnow
from app.crypto.stream import SEGMENT_SIZE
from app.models import StoredFile, Upload

from . import blobs
from .walker import Sender, csrf_token, text_of

pytestmark = blobs.BOTH_STORES
TUS = {"Tus-Resumable": "1.0.0"}


def metadata(**pairs: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in pairs.items())


class TusSender(Sender):
    """A sender at the files step, uploading as the page's script would."""

    def ready(self) -> "TusSender":
        self.personal()
        self.verify()
        self.recipients("anna@gemeente.example")
        self.token = self.upload_token()
        return self

    def headers(self, **extra: str) -> dict[str, str]:
        return {**TUS, "X-CSRFToken": self.token, **extra}

    def create(self, length: int, name: str = "scan.zip", **extra: str):  # type: ignore[no-untyped-def]
        return self.post(
            "/send/uploads", headers=self.headers(**{"Upload-Length": str(length), "Upload-Metadata": metadata(filename=name), **extra})
        )

    def patch(self, location: str, offset: int, body: bytes, **extra: str):  # type: ignore[no-untyped-def]
        headers = self.headers(**{"Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream", **extra})
        return self.client.patch(location, base_url="https://portal.example.nl", data=body, headers=headers)

    def head(self, location: str):  # type: ignore[no-untyped-def]
        return self.client.head(location, base_url="https://portal.example.nl", headers=TUS)


@pytest.fixture
def tus(app, mailbox) -> TusSender:
    return TusSender(app, mailbox).ready()


def _finish_and_download(sender: Sender, name: str) -> bytes:
    recipient = sender.open_uploaded()
    return recipient.get(recipient.file_links()[name]).data


def test_options_advertise_the_protocol_and_the_policy_size(tus: TusSender, app) -> None:
    r = tus.client.options("/send/uploads", base_url="https://portal.example.nl")
    assert r.status_code == 204
    assert r.headers["Tus-Version"] == "1.0.0"
    assert set(r.headers["Tus-Extension"].split(",")) == {"creation", "termination", "expiration"}
    assert int(r.headers["Tus-Max-Size"]) == app.config["KOERIER"].transfer.max_total_bytes


def test_resumed_upload_stores_whole_segments_and_arrives_intact(tus: TusSender, app) -> None:
    data = os.urandom(3 * SEGMENT_SIZE + 1234)
    created = tus.create(len(data))
    assert created.status_code == 201 and created.headers["Upload-Offset"] == "0"
    location = created.headers["Location"]
    assert "Upload-Expires" in created.headers

    # 100,000 bytes arrive; only the whole first segment is kept, and that is what the client is told.
    first = tus.patch(location, 0, data[:100_000])
    assert first.status_code == 204 and first.headers["Upload-Offset"] == str(SEGMENT_SIZE)
    assert tus.head(location).headers["Upload-Offset"] == str(SEGMENT_SIZE)
    assert tus.head(location).headers["Upload-Length"] == str(len(data))
    # A client that believes its own count is told the truth.
    assert tus.patch(location, 100_000, data[100_000:]).status_code == 409

    rest = tus.patch(location, SEGMENT_SIZE, data[SEGMENT_SIZE:])
    assert rest.status_code == 204 and rest.headers["Upload-Offset"] == str(len(data))
    # A client whose last response got lost asks again and learns it is done.
    assert tus.head(location).headers["Upload-Offset"] == str(len(data))
    assert _finish_and_download(tus, "scan.zip") == data


def test_no_plaintext_is_stored_and_the_blob_is_hidden_until_complete(tus: TusSender, app) -> None:
    data = b"BSN 123456782 " * 20_000
    location = tus.create(len(data)).headers["Location"]
    tus.patch(location, 0, data[: 2 * SEGMENT_SIZE])
    with app.app_context():
        [upload] = db.session().scalars(select(Upload)).all()
        assert db.session().scalars(select(StoredFile)).all() == []
    # Local: the pending file; S3: the tail object with the two segments.
    [pending] = blobs.names(app)
    assert pending != upload.blob_key and pending.startswith(upload.blob_key + ".")
    assert b"BSN 123456782" not in blobs.read(app, pending)


def test_empty_file_is_complete_on_creation(tus: TusSender, app) -> None:
    created = tus.create(0, name="leeg.pdf")
    assert created.status_code == 201 and created.headers["Upload-Offset"] == "0"
    assert _finish_and_download(tus, "leeg.pdf") == b""


def test_only_a_verified_sender_at_the_files_step_may_upload(app, mailbox) -> None:
    stranger = TusSender(app, mailbox)
    stranger.token = "x"
    assert stranger.create(10).status_code == 403
    halfway = TusSender(app, mailbox)
    halfway.personal()  # not verified yet
    halfway.token = csrf_token(halfway.get("/send/verify").get_data(as_text=True))
    assert halfway.create(10).status_code == 403


def test_csrf_header_and_protocol_version_are_required(tus: TusSender) -> None:
    good = tus.token
    tus.token = "wrong"
    assert tus.create(10).status_code == 403
    tus.token = good
    r = tus.post("/send/uploads", headers={"X-CSRFToken": good, "Upload-Length": "10", "Upload-Metadata": metadata(filename="a.pdf")})
    assert r.status_code == 412 and r.headers["Tus-Version"] == "1.0.0"
    location = tus.create(10).headers["Location"]
    tus.token = "wrong"
    assert tus.patch(location, 0, b"0123456789").status_code == 403
    tus.token = good
    assert tus.head(location).headers["Upload-Offset"] == "0"


def test_malformed_requests(tus: TusSender) -> None:
    assert tus.create(-1).status_code == 400
    assert tus.post("/send/uploads", headers=tus.headers(**{"Upload-Length": "5", "Upload-Metadata": "filename !!!"})).status_code == 400
    assert tus.post("/send/uploads", headers=tus.headers(**{"Upload-Defer-Length": "1"})).status_code == 400
    location = tus.create(10).headers["Location"]
    assert tus.patch(location, 0, b"0123456789", **{"Content-Type": "application/octet-stream"}).status_code == 415
    assert tus.patch(location, 0, b"0123456789-too-long").status_code == 413
    assert tus.head(location).headers["Upload-Offset"] == "0"


def test_a_chunked_body_past_the_length_gets_the_tus_answer(tus: TusSender) -> None:
    """A body without Content-Length (chunked) cannot be refused before it is
    read: it is refused once it runs past the length, with the answer a tus
    client reads (a JSON error with Tus-Resumable), not the portal's error page."""
    length = SEGMENT_SIZE + 10
    location = tus.create(length).headers["Location"]
    headers = tus.headers(**{"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"})
    r = tus.client.patch(
        location, base_url="https://portal.example.nl", headers=headers, input_stream=io.BytesIO(os.urandom(2 * length)),
        # As gunicorn hands over a chunked body: no length, the stream ends where the body does.
        environ_overrides={"HTTP_TRANSFER_ENCODING": "chunked", "wsgi.input_terminated": True},
    )
    assert r.status_code == 413 and r.headers["Tus-Resumable"] == "1.0.0"
    assert r.get_json() == {"error": "The body runs past Upload-Length"}
    assert tus.head(location).headers["Upload-Offset"] == "0"


class ResetAfter(io.BytesIO):
    """A request body whose connection is reset once the bytes given have arrived."""

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def,override]
        if count := super().readinto(buffer):
            return count
        raise ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")


def test_what_arrived_before_a_connection_reset_is_kept(tus: TusSender) -> None:
    """A connection reset (or a read that timed out) in the middle of a body:
    the whole segments that arrived before it are stored, and the client goes
    on after them."""
    data = os.urandom(20 * SEGMENT_SIZE)
    location = tus.create(len(data)).headers["Location"]
    headers = tus.headers(**{"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"})
    arrived = 5 * SEGMENT_SIZE + 1000
    r = tus.client.patch(
        location, base_url="https://portal.example.nl", headers=headers,
        input_stream=ResetAfter(data[:arrived]), environ_overrides={"CONTENT_LENGTH": str(len(data))},
    )
    assert r.status_code == 400
    offset = int(tus.head(location).headers["Upload-Offset"])
    assert offset == 5 * SEGMENT_SIZE
    assert tus.patch(location, offset, data[offset:]).status_code == 204
    assert _finish_and_download(tus, "scan.zip") == data


def test_policy_refuses_type_count_and_size(make_app, mailbox) -> None:
    app = make_app({"transfer": {"max_total_bytes": 1_000_000, "max_files": 2}})
    sender = TusSender(app, mailbox).ready()
    refused = sender.create(10, name="setup.exe")
    assert refused.status_code == 403 and "setup.exe" in refused.json["error"]
    assert sender.create(1_000_001).status_code == 413
    assert sender.create(600_000).status_code == 201
    # The running upload reserves its length.
    assert sender.create(600_000, name="b.pdf").status_code == 413
    assert sender.create(10, name="b.pdf").status_code == 201
    assert sender.create(10, name="c.pdf").status_code == 403


def test_another_senders_upload_is_not_found(tus: TusSender, app, mailbox) -> None:
    location = tus.create(10).headers["Location"]
    other = TusSender(app, mailbox)
    other.person.email = "piet@zorg.example"
    other.ready()
    assert other.head(location).status_code == 404
    assert other.patch(location, 0, b"0123456789").status_code == 404


def test_termination(tus: TusSender, app) -> None:
    running = tus.create(2 * SEGMENT_SIZE).headers["Location"]
    tus.patch(running, 0, b"x" * SEGMENT_SIZE)
    done = tus.create(4, name="klaar.pdf").headers["Location"]
    tus.patch(done, 0, b"done")
    assert len(blobs.names(app)) == 2

    for location in (running, done):
        r = tus.client.delete(location, base_url="https://portal.example.nl", headers=tus.headers())
        assert r.status_code == 204
        assert tus.head(location).status_code == 404
    assert blobs.leftovers(app) == []


def test_a_second_writer_waits_its_turn(tus: TusSender, app) -> None:
    location = tus.create(10).headers["Location"]
    store = app.extensions["koerier"].store
    with app.app_context(), db.new_session(app) as session:
        upload = session.scalars(select(Upload)).one()
        # Another request (on any app server) is writing the upload.
        with store.resume(session, upload, session.commit):
            busy = tus.patch(location, 0, b"0123456789")
            assert busy.status_code == 423 and "Retry-After" in busy.headers
    assert tus.patch(location, 0, b"0123456789").headers["Upload-Offset"] == "10"


def test_the_same_file_added_whole_by_the_form_completes_an_unfinished_upload(tus: TusSender, app) -> None:
    """Without a script the page cannot resume an upload; adding the same
    file again, as the files step says, leaves one whole copy and Next goes on."""
    content = os.urandom(2 * SEGMENT_SIZE)
    half = tus.create(len(content), name="half.zip").headers["Location"]
    tus.patch(half, 0, content[:SEGMENT_SIZE])
    other = tus.create(len(content) + 1, name="half.zip").headers["Location"]  # another file of that name stays
    tus.patch(other, 0, content[:SEGMENT_SIZE])
    assert tus.files([("half.zip", content)], action="upload").status_code == 302
    assert tus.head(half).status_code == 404
    assert tus.head(other).headers["Upload-Offset"] == str(SEGMENT_SIZE)
    with app.app_context():
        [stored] = db.session().scalars(select(StoredFile)).all()
    assert stored.size == len(content)
    assert tus.client.delete(other, base_url="https://portal.example.nl", headers=tus.headers()).status_code == 204
    assert tus.files(action="next").location.endswith("/send/options")


def test_abandoned_uploads_expire_and_leave_nothing(tus: TusSender, app) -> None:
    location = tus.create(2 * SEGMENT_SIZE).headers["Location"]
    tus.patch(location, 0, b"x" * SEGMENT_SIZE)
    later = utcnow() + timedelta(hours=app.config["KOERIER"].transfer.draft_ttl_hours, minutes=1)
    report = purge.run(lambda: db.new_session(app), app.extensions["koerier"], later)
    assert report.drafts_removed == 1
    assert blobs.leftovers(app) == []
    with app.app_context():
        assert db.session().scalars(select(Upload)).all() == []


def test_an_unfinished_upload_stops_next_until_it_is_removed(tus: TusSender, app) -> None:
    """A transfer never goes out without a file the sender added: Next is
    refused, naming it, and its Remove button works without a script."""
    half = tus.create(2 * SEGMENT_SIZE, name="half.zip").headers["Location"]
    tus.patch(half, 0, os.urandom(SEGMENT_SIZE))
    location = tus.create(5, name="heel.pdf").headers["Location"]
    tus.patch(location, 0, b"whole")
    refused = tus.files(action="next")
    assert refused.status_code == 422
    page = text_of(refused)
    assert "“half.zip” was not uploaded completely. Add the same file again to continue, or remove it." in page
    assert "Not uploaded completely: 65.5 kB of 131.1 kB" in page
    assert "Add the same file again to continue, or remove it." in page.split("Not uploaded completely")[1]
    # Nor does "Start transaction" let it through, reached by typing the options step's address.
    assert tus.options().status_code == 302
    assert tus.notification().location.endswith("/send/files")

    upload_id = half.rsplit("/", 1)[1]
    remove = re.search(rf'<form method="post" action="(/send/files/{upload_id}/remove)">\s*(<input[^>]*>)', page)
    assert remove, "no Remove button for half.zip"
    assert tus.post(remove.group(1), data={"csrf_token": csrf_token(remove.group(2))}).status_code == 302
    recipient = tus.open_uploaded()
    assert list(recipient.file_links()) == ["heel.pdf"]
    with app.app_context():
        [stored] = db.session().scalars(select(StoredFile)).all()
    assert blobs.leftovers(app) == [stored.blob_key]
    assert hashlib.sha256(recipient.get(recipient.file_links()["heel.pdf"]).data).hexdigest() == hashlib.sha256(b"whole").hexdigest()

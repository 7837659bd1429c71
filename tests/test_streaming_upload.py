"""Uploads stream into the encrypted store: no temporary files, no spooling."""

from __future__ import annotations

import os
import tempfile

from collections.abc import Callable

import pytest
from flask import Flask

from app.db import new_session
from app.forms import ButtonForm
from app.upload_limits import claim_leases, subject_key
from app.web import streams_body

from . import blobs
from .walker import Recipient, Sender, csrf_token, multipart

MiB = 1024 * 1024


def forbid_temporary_files(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("plaintext would be spooled to a temporary file")

    # Werkzeug's form parser and Python's cgi-style parsers spool through
    # these (a SpooledTemporaryFile past its size calls TemporaryFile).
    for name in ("TemporaryFile", "NamedTemporaryFile", "SpooledTemporaryFile", "mkstemp"):
        monkeypatch.setattr(tempfile, name, refuse)


@blobs.BOTH_STORES
def test_upload_never_creates_a_temporary_file(sender: Sender, app, monkeypatch: pytest.MonkeyPatch) -> None:
    sender.personal()
    sender.verify()
    sender.recipients("anna@gemeente.example")

    forbid_temporary_files(monkeypatch)
    data = os.urandom(3 * 1024 * 1024)
    assert sender.files([("scan.zip", data)], message="groot bestand").status_code == 302
    monkeypatch.undo()

    assert sender.options().status_code == 302
    summary = sender.notification()
    assert summary.status_code == 200
    recipient = Recipient(app)
    from .walker import Sent

    sent = Sent(summary, {"anna@gemeente.example": sender.mailbox.last_to("anna@gemeente.example")})
    recipient.unlock(sent.access_id("anna@gemeente.example"), "Zonnebloem-Kade-1987!")
    assert recipient.get(recipient.file_links()["scan.zip"]).data == data


@blobs.BOTH_STORES
@pytest.mark.parametrize("size", [256 * 1024 - 1, 256 * 1024, 256 * 1024 + 200, 5 * 1024 * 1024 + 17, 17 * 1024 * 1024 + 3])
def test_chunk_boundaries_do_not_matter(sender: Sender, size: int) -> None:
    """Sizes around the server's read size, where a chunk ends inside a boundary."""
    sender.personal()
    sender.verify()
    sender.recipients("anna@gemeente.example")
    data = b"\r\n--" * (size // 4) + b"x" * (size % 4)
    assert sender.files([("a.zip", data)], action="upload").status_code == 302
    recipient = sender.open_uploaded()
    assert recipient.get(recipient.file_links()["a.zip"]).data == data


def test_oversized_form_field_is_refused(sender: Sender) -> None:
    sender.personal()
    sender.verify()
    sender.recipients("anna@gemeente.example")
    assert sender.files([], message="x" * (300 * 1024)).status_code == 400


def hold_the_upload_slot(app: Flask, sender: Sender) -> None:
    """Another upload of the same sender is running."""
    with app.app_context(), new_session(app) as session:
        assert claim_leases(session, "f" * 32, "elsewhere", [(subject_key("uploads-sender", sender.person.email), 1)])


REFUSALS: dict[str, tuple[dict, Callable[[Flask, Sender], None] | None, int]] = {
    "too many uploads": ({"limits": {"concurrent_uploads_per_sender": 1}}, hold_the_upload_slot, 429),
    "larger than a transfer": ({"transfer": {"max_total_bytes": MiB}}, None, 413),
    "short of disk space": ({"storage": {"min_free_bytes": 2**59}}, None, 507),
    "forged token": ({}, None, 400),
}


@pytest.mark.parametrize("refusal", REFUSALS)
def test_a_refused_upload_never_creates_a_temporary_file(make_app, mailbox, monkeypatch, refusal: str) -> None:
    config, prepare, status = REFUSALS[refusal]
    app = make_app(config)
    sender = Sender(app, mailbox)
    sender.personal()
    sender.verify()
    sender.recipients("anna@gemeente.example")
    token = "forged" if refusal == "forged token" else sender.upload_token()
    if prepare:
        prepare(app, sender)

    forbid_temporary_files(monkeypatch)
    parts = [("csrf_token", token), ("files", ("scan.zip", os.urandom(4 * MiB))), ("message", "Zie bijlage")]
    body, content_type = multipart(parts)  # type: ignore[arg-type]
    assert sender.post("/send/files", data=body, content_type=content_type).status_code == status
    # The resumable endpoint takes no body at its creation; one sent anyway is not parsed.
    headers = {"Tus-Resumable": "1.0.0", "X-CSRFToken": token, "Upload-Length": "10"}
    small, _ = multipart([("files", ("scan.zip", os.urandom(900 * 1024)))])
    assert sender.post("/send/uploads", data=small, content_type=content_type, headers=headers).status_code == {
        "too many uploads": 429, "short of disk space": 507, "forged token": 403,
    }.get(refusal, 201)


def test_no_other_form_takes_a_file(sender: Sender, monkeypatch: pytest.MonkeyPatch) -> None:
    # Werkzeug would spool a file part of an ordinary form to a temporary file.
    sender.personal()
    sender.verify()
    token = csrf_token(sender.get("/send/recipients").get_data(as_text=True))
    forbid_temporary_files(monkeypatch)
    body, content_type = multipart([("csrf_token", token), ("to", "anna@gemeente.example"),
                                    ("files", ("scan.zip", os.urandom(900 * 1024)))])
    assert sender.post("/send/recipients", data=body, content_type=content_type).status_code == 400


def test_a_view_that_streams_its_body_cannot_have_it_parsed(make_app) -> None:
    # A future form built without formdata=None in an upload view, or a
    # global hook reading request.form, fails loudly instead of spooling.
    app = make_app()

    @app.post("/probe")
    @streams_body
    def probe() -> str:
        return str(ButtonForm().data)

    body, content_type = multipart([("csrf_token", "x"), ("files", ("scan.zip", b"plaintext"))])
    with pytest.raises(RuntimeError, match="reads its body as a stream"):
        app.test_client().post("/probe", data=body, content_type=content_type)

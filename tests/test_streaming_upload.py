"""Uploads stream into the encrypted store: no temporary files, no spooling."""

from __future__ import annotations

import os
import tempfile

import pytest

from .walker import Recipient, Sender


def test_upload_never_creates_a_temporary_file(sender: Sender, app, monkeypatch: pytest.MonkeyPatch) -> None:
    sender.personal()
    sender.verify()
    sender.recipients("anna@gemeente.example")

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("plaintext would be spooled to a temporary file")

    # Werkzeug's form parser and Python's cgi-style parsers spool through these.
    for name in ("TemporaryFile", "NamedTemporaryFile", "SpooledTemporaryFile", "mkstemp"):
        monkeypatch.setattr(tempfile, name, refuse)
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


@pytest.mark.parametrize("size", [256 * 1024 - 1, 256 * 1024, 256 * 1024 + 200, 5 * 1024 * 1024 + 17])
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

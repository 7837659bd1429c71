"""No plaintext at rest: markers in content, names and message appear nowhere,
not in the instance folder and not in the bucket."""

from __future__ import annotations

from pathlib import Path

import pytest

from . import blobs
from .walker import Sender

pytestmark = blobs.BOTH_STORES

CONTENT = b"MARKER-CONTENT-7f3a9c"
NAME = "MARKER-NAME-41be02.txt"
MESSAGE = "MARKER-MESSAGE-c9d1e8"


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


@pytest.mark.parametrize("mode", ["manual", "generate", "none"])
def test_markers_appear_in_no_file_under_the_instance(sender: Sender, app, mode: str) -> None:
    extra = {} if mode == "manual" else {"password_mode": mode, "password": None, "password_repeat": None}
    sender.send(files=[(NAME, CONTENT * 5000)], message=MESSAGE, **extra)
    instance = app.extensions["koerier"].instance_path
    files = _files(instance)
    assert any(p.name.endswith(".sqlite3") for p in files)
    stored = {str(path): path.read_bytes() for path in files} | blobs.contents(app)
    assert len(stored) > len(files) or app.config["KOERIER"].storage.backend == "local"
    for where, data in stored.items():
        for marker in (CONTENT, NAME.encode(), MESSAGE.encode()):
            assert marker not in data, f"{marker!r} found in {where}"
            assert marker.decode().encode("utf-16-le") not in data


def test_a_draft_holds_no_plaintext_either(sender: Sender, app) -> None:
    """Before commit, the upload and message are already ciphertext."""
    sender.personal()
    sender.verify()
    sender.recipients("anna@gemeente.example")
    sender.files([(NAME, CONTENT)], message=MESSAGE, action="upload")
    stored = [path.read_bytes() for path in _files(app.extensions["koerier"].instance_path)]
    for data in stored + list(blobs.contents(app).values()):
        assert CONTENT not in data and NAME.encode() not in data and MESSAGE.encode() not in data

"""No plaintext at rest: markers in content, names and message appear nowhere,
not in the instance folder and not in the bucket."""

from __future__ import annotations

import pytest

from . import blobs
from .conftest import Setup
from .walker import Sender

pytestmark = blobs.BOTH_STORES

CONTENT = b"MARKER-CONTENT-7f3a9c"
NAME = "MARKER-NAME-41be02.txt"
MESSAGE = "MARKER-MESSAGE-c9d1e8"


@pytest.mark.parametrize("mode", ["manual", "generate", "none"])
def test_markers_appear_in_no_file_the_app_keeps(sender: Sender, app, setup: Setup, mode: str) -> None:
    extra = {} if mode == "manual" else {"password_mode": mode, "password": None, "password_repeat": None}
    sender.send(files=[(NAME, CONTENT * 5000)], message=MESSAGE, **extra)
    files = setup.files_at_rest(app.extensions["koerier"].instance_path)
    assert any(p.name.endswith(".sqlite3") or p.parent.name == "pg_wal" for p in files)
    stored = {str(path): path.read_bytes() for path in files} | blobs.contents(app)
    assert len(stored) > len(files) or app.config["KOERIER"].storage.backend == "local"
    for where, data in stored.items():
        for marker in (CONTENT, NAME.encode(), MESSAGE.encode()):
            assert marker not in data, f"{marker!r} found in {where}"
            assert marker.decode().encode("utf-16-le") not in data


def test_a_draft_holds_no_plaintext_either(sender: Sender, app, setup: Setup) -> None:
    """Before commit, the upload and message are already ciphertext."""
    sender.personal()
    sender.verify()
    sender.recipients("anna@gemeente.example")
    sender.files([(NAME, CONTENT)], message=MESSAGE, action="upload")
    stored = [path.read_bytes() for path in setup.files_at_rest(app.extensions["koerier"].instance_path)]
    for data in stored + list(blobs.contents(app).values()):
        assert CONTENT not in data and NAME.encode() not in data and MESSAGE.encode() not in data

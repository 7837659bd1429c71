"""Nothing under the instance folder is readable by other users of the machine.

(Local store only: objects in a bucket have no file modes; who may read
them is the object store's access control.)"""

from __future__ import annotations

import base64
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from app import create_app

from .mailbox import Outbox
from .walker import PASSWORD, Person, Recipient, Sender


def loose(instance: Path) -> dict[str, str]:
    """Everything under ``instance`` (itself included) with group or other permission bits."""
    return {
        str(path.relative_to(instance)): oct(stat.S_IMODE(path.lstat().st_mode))
        for path in [instance, *instance.rglob("*")]
        if stat.S_IMODE(path.lstat().st_mode) & 0o077
    }


@pytest.fixture
def open_umask() -> Iterator[None]:
    previous = os.umask(0o022)
    yield
    os.umask(previous)


@pytest.mark.usefixtures("open_umask")
def test_a_whole_transfer_leaves_nothing_readable_by_others(make_app, tmp_path: Path) -> None:
    instance = tmp_path / "instance"
    app = make_app({"mail": {"backend": "outbox"}}, instance=instance)
    outbox = Outbox(instance / "outbox")
    # Another sender's upload stays unfinished, so a pending blob is on disk too.
    other = Sender(app, outbox, Person(email="piet@zorg.example"))
    other.personal()
    other.verify()
    other.recipients("anna@gemeente.example")
    created = other.post(
        "/send/uploads",
        headers={
            "Tus-Resumable": "1.0.0", "X-CSRFToken": other.upload_token(), "Upload-Length": "100",
            "Upload-Metadata": "filename " + base64.b64encode(b"half.zip").decode(),
        },
    )
    assert created.status_code == 201
    sender = Sender(app, outbox)
    sender.personal()
    sender.verify()
    sender.recipients("anna@gemeente.example")
    assert sender.files([("verslag.pdf", b"%PDF-1.4 report\n")], message="vertrouwelijk").status_code == 302
    sent = sender.finish()
    recipient = Recipient(app)
    recipient.unlock(sent.access_id("anna@gemeente.example"), PASSWORD)
    assert recipient.get(recipient.file_links()["verslag.pdf"]).data == b"%PDF-1.4 report\n"

    names = {path.name for path in instance.rglob("*")}
    assert {"koerier.sqlite3", "koerier.sqlite3-wal", "koerier.sqlite3-shm", "secret_key", "store", "outbox"} <= names
    assert any(name.endswith(".partial") for name in names) and any(name.endswith(".eml") for name in names)
    assert loose(instance) == {}


@pytest.mark.usefixtures("open_umask")
def test_an_older_instance_is_tightened_at_start_up(make_app, tmp_path: Path) -> None:
    instance = tmp_path / "instance"
    make_app({"mail": {"backend": "outbox"}}, instance=instance)
    # What a version without these rules left behind.
    blob_folder = instance / "store" / "ab"
    blob_folder.mkdir()
    (blob_folder / ("ab" + "0" * 30)).write_bytes(b"ciphertext")
    for name in ("koerier.sqlite3", "secret_key", "store", "store/ab", "outbox"):
        path = instance / name
        path.chmod(0o755 if path.is_dir() else 0o644)

    create_app({"mail": {"backend": "outbox"}}, instance_path=instance)
    # The blob itself is not visited; the folders around it keep others out.
    assert loose(instance) == {f"store/ab/ab{'0' * 30}": "0o644"}

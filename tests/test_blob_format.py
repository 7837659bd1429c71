"""Format version 2: every segment is bound to its file and transfer, the
whole header is authenticated, and version 1 blobs stay readable."""

from __future__ import annotations

import io
import os
import struct

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import select

from app import db
from app.crypto.keys import DecryptionError, derive, new_key
from app.crypto.stream import HEADER_BYTES, SEGMENT_SIZE, SegmentReader, SegmentWriter
from app.models import StoredFile

from . import blobs
from .walker import PASSWORD, Recipient, Sender

IDS = {"transfer_id": "9b7e0c1a-0000-4000-8000-00000000aaaa", "file_id": "3c5d7e9f-0000-4000-8000-00000000bbbb"}
# The header's fields: magic, version, segment size, salt.
VERSION_AT, SIZE_AT = 4, 5


def seal_v2(data: bytes, dek: bytes, **ids: str) -> bytes:
    sink = io.BytesIO()
    writer = SegmentWriter(sink, dek, **{**IDS, **ids})
    writer.write(data)
    writer.close()
    return sink.getvalue()


def seal_v1(data: bytes, dek: bytes, segment_size: int = SEGMENT_SIZE) -> bytes:
    """A version 1 blob, written from docs/FORMAT.md: the header alone is the associated data."""
    salt = os.urandom(16)
    header = b"KOER" + bytes([1]) + struct.pack(">I", segment_size) + salt
    aead = AESGCM(derive(dek, "koerier/file/v1", salt))
    pieces = [data[i : i + segment_size] for i in range(0, len(data), segment_size)] or [b""]
    body = b"".join(
        aead.encrypt(i.to_bytes(11, "big") + (b"\x01" if i == len(pieces) - 1 else b"\x00"), piece, header)
        for i, piece in enumerate(pieces)
    )
    return header + body


def read(blob: bytes, dek: bytes, **ids: str) -> bytes:
    return b"".join(SegmentReader(io.BytesIO(blob), dek, len(blob), **{**IDS, **ids}).iter_range())


def test_new_blobs_are_version_2_and_round_trip() -> None:
    dek, data = new_key(), os.urandom(2 * SEGMENT_SIZE + 99)
    blob = seal_v2(data, dek)
    assert blob[VERSION_AT] == 2
    assert read(blob, dek) == data


@pytest.mark.parametrize("other", [{"file_id": "another-file"}, {"transfer_id": "another-transfer"}])
def test_a_blob_read_as_another_file_or_transfer_fails(other: dict[str, str]) -> None:
    dek, data = new_key(), os.urandom(SEGMENT_SIZE + 5)
    blob = seal_v2(data, dek)
    with pytest.raises(DecryptionError):
        read(blob, dek, **other)


@pytest.mark.parametrize("size", [0, 5, SEGMENT_SIZE, 2 * SEGMENT_SIZE + 1])
def test_version_1_blobs_stay_readable(size: int) -> None:
    dek, data = new_key(), os.urandom(size)
    blob = seal_v1(data, dek)
    # Version 1 binds no ids: any will do.
    assert read(blob, dek) == data
    assert read(blob, dek, file_id="whatever") == data


def test_a_version_2_blob_relabelled_as_version_1_fails() -> None:
    """Otherwise the binding to the ids could be stripped by one byte."""
    dek = new_key()
    blob = bytearray(seal_v2(b"report", dek))
    blob[VERSION_AT] = 1
    with pytest.raises(DecryptionError):
        read(bytes(blob), dek)


@pytest.mark.parametrize("seal", [seal_v1, seal_v2], ids=["v1", "v2"])
def test_the_segment_size_field_is_authenticated(seal) -> None:
    # One segment: a reader that left the size out of the associated data
    # would find the same segment at the same place and decrypt it.
    dek = new_key()
    blob = bytearray(seal(b"one small file", dek))
    assert len(blob) < HEADER_BYTES + 1024
    blob[SIZE_AT : SIZE_AT + 4] = struct.pack(">I", SEGMENT_SIZE // 2)
    with pytest.raises(DecryptionError):
        read(bytes(blob), dek)


@blobs.BOTH_STORES
def test_swapped_blobs_of_one_transfer_fail_to_download(sender: Sender, app) -> None:
    first, second = os.urandom(SEGMENT_SIZE + 10), os.urandom(SEGMENT_SIZE + 10)
    sent = sender.send(files=[("first.pdf", first), ("second.pdf", second)])
    with app.app_context():
        keys = [f.blob_key for f in db.session().scalars(select(StoredFile).order_by(StoredFile.position))]
    contents = [blobs.read(app, key) for key in keys]
    blobs.write(app, keys[0], contents[1])
    blobs.write(app, keys[1], contents[0])

    recipient = Recipient(app)
    recipient.unlock(sent.access_id("anna@gemeente.example"), PASSWORD)
    for name in ("first.pdf", "second.pdf"):
        with pytest.raises(DecryptionError):
            recipient.get(recipient.file_links()[name]).data


@blobs.BOTH_STORES
def test_a_blob_copied_into_another_transfer_fails_to_download(sender: Sender, app) -> None:
    def blob_keys() -> set[str]:
        with app.app_context():
            return set(db.session().scalars(select(StoredFile.blob_key)))

    size = SEGMENT_SIZE + 10
    sender.send(files=[("mine.pdf", os.urandom(size))])
    [mine] = blob_keys()
    theirs = sender.send(files=[("theirs.pdf", os.urandom(size))])
    [target] = blob_keys() - {mine}
    blobs.write(app, target, blobs.read(app, mine))

    recipient = Recipient(app)
    recipient.unlock(theirs.access_id("anna@gemeente.example"), PASSWORD)
    with pytest.raises(DecryptionError):
        recipient.get(recipient.file_links()["theirs.pdf"]).data

"""The encrypted file format: round trips, and every kind of tampering fails."""

from __future__ import annotations

import io
import os
import random

import pytest

from app.crypto.keys import DecryptionError, new_key
from app.crypto.stream import (
    HEADER_BYTES, SEGMENT_SIZE, TAG_BYTES, LengthExceeded, ResumableWriter, SegmentReader, SegmentWriter, ciphertext_size,
    new_header,
)

from . import blobs
from .walker import Recipient, Sender

STRIDE = SEGMENT_SIZE + TAG_BYTES
IDS = {"transfer_id": "7c0d6b1e-transfer", "file_id": "5f2a9c3d-file"}


def seal(data: bytes, dek: bytes, chunk: int = 10_000) -> bytes:
    sink = io.BytesIO()
    writer = SegmentWriter(sink, dek, **IDS)
    for i in range(0, len(data), chunk):
        writer.write(data[i : i + chunk])
    writer.close()
    return sink.getvalue()


def unseal(blob: bytes, dek: bytes, start: int = 0, end: int | None = None) -> bytes:
    return b"".join(SegmentReader(io.BytesIO(blob), dek, len(blob), **IDS).iter_range(start, end))


@pytest.mark.parametrize("size", [1, SEGMENT_SIZE, SEGMENT_SIZE + 1, 3 * SEGMENT_SIZE + 1234])
def test_resumable_pieces_give_the_same_format(size: int) -> None:
    data, dek, header = os.urandom(size), new_key(), new_header()
    sealed: dict[int, bytes] = {}

    def sink(index: int, segment: bytes) -> None:
        assert index not in sealed, "an index sealed twice"
        sealed[index] = segment

    rng = random.Random(size)
    offset = 0
    while offset < size:
        # A request brings some bytes and ends; a partial segment is never stored.
        writer = ResumableWriter(dek, header, size, offset, sink, **IDS)
        writer.write(data[offset : offset + rng.randint(1, 150_000)])
        assert writer.offset % SEGMENT_SIZE == 0 or writer.offset == size
        offset = writer.offset
    assert writer.complete
    blob = header + b"".join(sealed[index] for index in sorted(sealed))
    assert len(blob) == ciphertext_size(size)
    assert unseal(blob, dek) == data


def test_resumable_refuses_bytes_past_the_length_and_an_empty_file() -> None:
    writer = ResumableWriter(new_key(), new_header(), 10, 0, lambda index, segment: None, **IDS)
    with pytest.raises(LengthExceeded):
        writer.write(b"x" * 11)
    # An empty file has nothing to resume: it is written whole when it is created.
    with pytest.raises(ValueError):
        ResumableWriter(new_key(), new_header(), 0, 0, lambda index, segment: None, **IDS)


@pytest.mark.parametrize("size", [0, 1, SEGMENT_SIZE - 1, SEGMENT_SIZE, SEGMENT_SIZE + 1, 3 * SEGMENT_SIZE, 200_001])
def test_round_trip_and_size(size: int) -> None:
    dek, data = new_key(), os.urandom(size)
    blob = seal(data, dek)
    assert len(blob) == ciphertext_size(size)
    assert unseal(blob, dek) == data
    reader = SegmentReader(io.BytesIO(blob), dek, len(blob), **IDS)
    assert reader.size == size


def test_ranges_decrypt_only_what_is_asked() -> None:
    dek, data = new_key(), os.urandom(3 * SEGMENT_SIZE + 5)
    blob = seal(data, dek, chunk=SEGMENT_SIZE * 2 + 7)
    for start, end in ((0, 0), (SEGMENT_SIZE - 1, SEGMENT_SIZE), (5, 3 * SEGMENT_SIZE), (len(data) - 1, len(data) - 1)):
        assert unseal(blob, dek, start, end) == data[start : end + 1]


def test_same_plaintext_never_gives_the_same_ciphertext() -> None:
    dek, data = new_key(), b"a" * 1000
    assert seal(data, dek) != seal(data, dek)


def _fails(blob: bytes, dek: bytes) -> list[bytes]:
    """Collects what a reader yields before failing; it must fail."""
    got: list[bytes] = []
    with pytest.raises(DecryptionError):
        for chunk in SegmentReader(io.BytesIO(blob), dek, len(blob), **IDS).iter_range():
            got.append(chunk)
    return got


def test_flipped_byte_fails_and_nothing_of_that_segment_is_yielded() -> None:
    dek, data = new_key(), os.urandom(3 * SEGMENT_SIZE)
    blob = bytearray(seal(data, dek))
    blob[HEADER_BYTES + STRIDE + 100] ^= 0x01  # inside segment 1
    got = _fails(bytes(blob), dek)
    assert b"".join(got) == data[:SEGMENT_SIZE]


def test_truncation_at_a_segment_boundary_fails() -> None:
    dek, data = new_key(), os.urandom(3 * SEGMENT_SIZE + 10)
    blob = seal(data, dek)
    _fails(blob[: HEADER_BYTES + 2 * STRIDE], dek)
    _fails(blob[:-1], dek)


def test_swapped_segments_fail() -> None:
    dek, data = new_key(), os.urandom(3 * SEGMENT_SIZE + 10)
    blob = seal(data, dek)
    body = blob[HEADER_BYTES:]
    swapped = blob[:HEADER_BYTES] + body[STRIDE : 2 * STRIDE] + body[:STRIDE] + body[2 * STRIDE :]
    assert _fails(swapped, dek) == []


def test_wrong_key_and_changed_header_fail() -> None:
    dek, data = new_key(), os.urandom(1000)
    blob = seal(data, dek)
    _fails(blob, new_key())
    changed = bytearray(blob)
    changed[HEADER_BYTES - 1] ^= 0xFF  # last salt byte
    _fails(bytes(changed), dek)


@blobs.BOTH_STORES
@pytest.mark.parametrize("damage", ["flip", "truncate", "swap"])
def test_tampered_blob_aborts_the_download(sender: Sender, app, damage: str) -> None:
    data = os.urandom(3 * SEGMENT_SIZE + 10)
    sent = sender.send(files=[("scan.zip", data)])
    [name] = blobs.names(app)
    blob = bytearray(blobs.read(app, name))
    if damage == "flip":
        blob[HEADER_BYTES + STRIDE + 7] ^= 0x80
    elif damage == "truncate":
        blob = blob[: HEADER_BYTES + 2 * STRIDE]
    else:
        body = blob[HEADER_BYTES:]
        blob = blob[:HEADER_BYTES] + body[STRIDE : 2 * STRIDE] + body[:STRIDE] + body[2 * STRIDE :]
    blobs.write(app, name, bytes(blob))
    recipient = Recipient(app)
    recipient.unlock(sent.access_id("anna@gemeente.example"), "Zonnebloem-Kade-1987!")
    url = recipient.file_links()["scan.zip"]
    received = bytearray()
    with pytest.raises(DecryptionError):
        # The first chunk may already fail, inside the client's own call.
        response = recipient.get(url, buffered=False)
        for chunk in response.response:
            received += chunk
    # Only segments before the damaged one went out, and they were genuine.
    assert bytes(received) == data[: len(received)]
    assert len(received) < len(data)
    if damage == "swap":
        assert received == b""
    if damage == "flip":
        # The damaged segment is the second: exactly the first went out.
        assert len(received) == SEGMENT_SIZE

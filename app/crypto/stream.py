"""Segmented AES-256-GCM file format (STREAM construction, as in age).

Layout of a blob (format version 2)::

    header  = magic "KOER" | version (1 byte) | segment size (u32 BE) | salt (16)
    segment = AES-256-GCM(file_key, nonce, plaintext[i], aad=header || "koerier/blob/v2/<transfer id>/<file id>")
    nonce   = segment counter (11 bytes BE) | last-segment flag (1 byte)

``file_key = HKDF-SHA256(DEK, salt, "koerier/file/v1")``. Every segment but
the last holds exactly ``segment size`` plaintext bytes; the last holds 0..size
bytes (0 only for an empty file). Because the counter and the last flag are
in the nonce, reordering, splicing and truncation all fail authentication,
and segment N sits at a computable offset, which makes ranges cheap. The
ids in the associated data bind a blob to its file: two blobs swapped, or a
blob copied to another transfer, fail authentication. Version 1 blobs (aad =
header alone) stay readable.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterator
from typing import BinaryIO, NamedTuple

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .keys import SALT_BYTES, DecryptionError, derive

MAGIC = b"KOER"
VERSION = 2
READABLE_VERSIONS = (1, 2)
SEGMENT_SIZE = 64 * 1024
TAG_BYTES = 16
_HEADER = struct.Struct(f">4sBI{SALT_BYTES}s")
HEADER_BYTES = _HEADER.size


def _nonce(counter: int, last: bool) -> bytes:
    return counter.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


def new_header(segment_size: int = SEGMENT_SIZE) -> bytes:
    return _HEADER.pack(MAGIC, VERSION, segment_size, os.urandom(SALT_BYTES))


class Header(NamedTuple):
    version: int
    segment_size: int
    salt: bytes


def parse_header(header: bytes) -> Header:
    """The fields of a well-formed header."""
    if len(header) != HEADER_BYTES:
        raise DecryptionError("truncated header")
    magic, version, segment_size, salt = _HEADER.unpack(header)
    if magic != MAGIC or version not in READABLE_VERSIONS or not 1024 <= segment_size <= 16 * 1024 * 1024:
        raise DecryptionError("not a Koerier blob")
    return Header(version, segment_size, salt)


class _Sealer:
    """The file key and associated data of one blob, from its header and its file's ids."""

    def __init__(self, dek: bytes, header: bytes, transfer_id: str, file_id: str) -> None:
        version, self.segment_size, salt = parse_header(header)
        self.aead = AESGCM(derive(dek, "koerier/file/v1", salt))
        self.aad = header if version == 1 else header + f"koerier/blob/v2/{transfer_id}/{file_id}".encode()

    def seal(self, index: int, last: bool, plaintext: bytes | bytearray | memoryview) -> bytes:
        return self.aead.encrypt(_nonce(index, last), plaintext, self.aad)

    def open(self, index: int, last: bool, sealed: bytes) -> bytes:
        try:
            return self.aead.decrypt(_nonce(index, last), sealed, self.aad)
        except (InvalidTag, ValueError):
            raise DecryptionError(f"segment {index} failed authentication") from None


def ciphertext_size(plaintext_size: int, segment_size: int = SEGMENT_SIZE) -> int:
    segments = max(1, -(-plaintext_size // segment_size))
    return HEADER_BYTES + plaintext_size + segments * TAG_BYTES


class SegmentWriter:
    """Encrypts a byte stream into ``sink`` as it arrives.

    At most one segment of plaintext is held in memory. A segment is sealed
    as "not last" only once a byte beyond it has arrived, so the final
    segment always carries the last flag.
    """

    def __init__(
        self, sink: BinaryIO, dek: bytes, *, transfer_id: str, file_id: str, segment_size: int = SEGMENT_SIZE,
    ) -> None:
        header = new_header(segment_size)
        self._sealer = _Sealer(dek, header, transfer_id, file_id)
        self._sink = sink
        self._segment_size = segment_size
        self._buffer = bytearray()
        self._counter = 0
        self._closed = False
        self.size = 0
        sink.write(header)

    def write(self, data: bytes) -> None:
        if self._closed:
            raise ValueError("writer is closed")
        self.size += len(data)
        size = self._segment_size
        view = memoryview(data)
        if self._buffer:
            # Top up the held segment; seal it once more data proves it is not the last.
            need = size - len(self._buffer)
            self._buffer += view[:need]
            view = view[need:]
            if not view:
                return
            self._seal(self._buffer, last=False)
            self._buffer = bytearray()
        # Seal straight from the caller's buffer, without copying, while at
        # least one byte beyond the segment is known to follow.
        while len(view) > size:
            self._seal(view[:size], last=False)
            view = view[size:]
        self._buffer += view

    def close(self) -> None:
        if not self._closed:
            self._seal(self._buffer, last=True)
            self._buffer = bytearray()
            self._closed = True

    def _seal(self, plaintext: bytes | bytearray | memoryview, last: bool) -> None:
        self._sink.write(self._sealer.seal(self._counter, last, plaintext))
        self._counter += 1


class LengthExceeded(ValueError):
    """A resumable upload sent more bytes than it declared."""


class ResumableWriter:
    """Seals a file of known length whose bytes may arrive over several requests.

    Knowing the length up front means a segment's last flag is known as soon
    as its bytes are complete, so every segment is sealed once, as it
    arrives, under the header it is given, and handed to ``sink(index,
    sealed)`` in order. Bytes of an incomplete segment are held in memory
    only and dropped when the request ends: ``offset`` is always a whole
    number of segments (or the full length).

    Sealing alone reveals nothing; the sink decides when sealed bytes leave
    memory, and makes sure first that no segment index is ever stored
    twice under one file key with different contents (app/storage.py,
    app/s3_store.py, docs/FORMAT.md "Resumable uploads"). An empty file
    has nothing to resume and is written in one go instead.
    """

    def __init__(
        self, dek: bytes, header: bytes, length: int, offset: int, sink: Callable[[int, bytes], None],
        *, transfer_id: str, file_id: str,
    ) -> None:
        self._sealer = _Sealer(dek, header, transfer_id, file_id)
        segment_size = self._sealer.segment_size
        if length <= 0 or offset % segment_size or offset >= length:
            raise ValueError("a stored offset is a whole number of segments, short of a length above zero")
        self._segment_size = segment_size
        self._sink = sink
        self._length = length
        self._last_index = -(-length // segment_size) - 1
        self._next = offset // segment_size
        self._buffer = bytearray()
        self.offset = offset

    @property
    def complete(self) -> bool:
        return self.offset == self._length

    def write(self, data: bytes | memoryview) -> None:
        if self.offset + len(self._buffer) + len(data) > self._length:
            raise LengthExceeded("more bytes than the declared length")
        view = memoryview(data)
        while view:
            want = self._segment_size if self._next < self._last_index else self._length - self.offset
            take = want - len(self._buffer)
            if not self._buffer and len(view) >= want:
                # A whole segment in the caller's buffer: seal it without copying.
                self._seal(view[:want])
                view = view[want:]
                continue
            self._buffer += view[:take]
            view = view[take:]
            if len(self._buffer) == want:
                self._seal(self._buffer)
                self._buffer = bytearray()

    def _seal(self, plaintext: bytes | bytearray | memoryview) -> None:
        index = self._next
        self._sink(index, self._sealer.seal(index, index == self._last_index, plaintext))
        self._next += 1
        self.offset += len(plaintext)


class SegmentReader:
    """Random access to the plaintext of one blob.

    Nothing is yielded from a segment before it has been authenticated, so a
    tampered segment stops the stream before any of its bytes go out.
    """

    def __init__(self, source: BinaryIO, dek: bytes, blob_size: int, *, transfer_id: str, file_id: str) -> None:
        header = source.read(HEADER_BYTES)
        self._sealer = _Sealer(dek, header, transfer_id, file_id)
        segment_size = self._sealer.segment_size
        body = blob_size - HEADER_BYTES
        stride = segment_size + TAG_BYTES
        self._segments = max(1, -(-body // stride))
        tail = body - (self._segments - 1) * stride
        if tail < TAG_BYTES:
            raise DecryptionError("truncated segment")
        self._source = source
        self._segment_size = segment_size
        self._stride = stride
        self.size = body - self._segments * TAG_BYTES

    def _segment(self, index: int) -> bytes:
        self._source.seek(HEADER_BYTES + index * self._stride)
        return self._sealer.open(index, index == self._segments - 1, self._source.read(self._stride))

    def iter_range(self, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Plaintext bytes ``start`` to ``end`` inclusive (default: to the end)."""
        if end is None:
            end = self.size - 1
        if self.size == 0:
            # An empty file still has one sealed segment; check it.
            self._segment(0)
            return
        first, last = start // self._segment_size, end // self._segment_size
        for index in range(first, last + 1):
            plain = self._segment(index)
            base = index * self._segment_size
            lo = max(start - base, 0)
            hi = min(end - base + 1, len(plain))
            yield plain[lo:hi] if (lo, hi) != (0, len(plain)) else plain

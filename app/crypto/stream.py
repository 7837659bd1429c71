"""Segmented AES-256-GCM file format (STREAM construction, as in age).

Layout of a blob::

    header  = magic "KOER" | version (1 byte) | segment size (u32 BE) | salt (16)
    segment = AES-256-GCM(file_key, nonce, plaintext[i], aad=header)
    nonce   = segment counter (11 bytes BE) | last-segment flag (1 byte)

``file_key = HKDF-SHA256(DEK, salt, "koerier/file/v1")``. Every segment but
the last holds exactly ``segment size`` plaintext bytes; the last holds 0..size
bytes (0 only for an empty file). Because the counter and the last flag are
in the nonce, reordering, splicing and truncation all fail authentication,
and segment N sits at a computable offset, which makes ranges cheap.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .keys import SALT_BYTES, DecryptionError, derive

MAGIC = b"KOER"
VERSION = 1
SEGMENT_SIZE = 64 * 1024
TAG_BYTES = 16
_HEADER = struct.Struct(f">4sBI{SALT_BYTES}s")
HEADER_BYTES = _HEADER.size


def _nonce(counter: int, last: bool) -> bytes:
    return counter.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


def new_header(segment_size: int = SEGMENT_SIZE) -> bytes:
    return _HEADER.pack(MAGIC, VERSION, segment_size, os.urandom(SALT_BYTES))


def _parse_header(header: bytes) -> tuple[int, bytes]:
    """(segment size, salt) of a well-formed header."""
    if len(header) != HEADER_BYTES:
        raise DecryptionError("truncated header")
    magic, version, segment_size, salt = _HEADER.unpack(header)
    if magic != MAGIC or version != VERSION or not 1024 <= segment_size <= 16 * 1024 * 1024:
        raise DecryptionError("not a Koerier blob")
    return segment_size, salt


def _file_aead(dek: bytes, header: bytes) -> AESGCM:
    return AESGCM(derive(dek, "koerier/file/v1", _parse_header(header)[1]))


def ciphertext_size(plaintext_size: int, segment_size: int = SEGMENT_SIZE) -> int:
    segments = max(1, -(-plaintext_size // segment_size))
    return HEADER_BYTES + plaintext_size + segments * TAG_BYTES


class SegmentWriter:
    """Encrypts a byte stream into ``sink`` as it arrives.

    At most one segment of plaintext is held in memory. A segment is sealed
    as "not last" only once a byte beyond it has arrived, so the final
    segment always carries the last flag.
    """

    def __init__(self, sink: BinaryIO, dek: bytes, segment_size: int = SEGMENT_SIZE) -> None:
        self._header = new_header(segment_size)
        self._aead = _file_aead(dek, self._header)
        self._sink = sink
        self._segment_size = segment_size
        self._buffer = bytearray()
        self._counter = 0
        self._closed = False
        self.size = 0
        sink.write(self._header)

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
        self._sink.write(self._aead.encrypt(_nonce(self._counter, last), plaintext, self._header))
        self._counter += 1


class LengthExceeded(ValueError):
    """A resumable upload sent more bytes than it declared."""


class ResumableWriter:
    """Seals a file of known length whose bytes may arrive over several requests.

    Knowing the length up front means a segment's last flag is known as soon
    as its bytes are complete, so every segment is sealed once and written
    once. Bytes of an incomplete segment are held in memory only and dropped
    when the request ends: ``offset`` is always a whole number of segments
    (or the full length), which is what a resuming client is told. The
    segment after it is therefore sealed for the first time when its bytes
    arrive again, and no nonce ever covers two different plaintexts on disk.
    """

    def __init__(self, sink: BinaryIO, dek: bytes, length: int, offset: int) -> None:
        sink.seek(0)
        header = sink.read(HEADER_BYTES)
        self._segment_size, _ = _parse_header(header)
        if offset % self._segment_size or (offset >= length and length):
            raise ValueError("a stored offset is a whole number of segments, short of the length")
        self._aead = _file_aead(dek, header)
        self._header = header
        self._sink = sink
        self._length = length
        self._last_index = max(0, -(-length // self._segment_size) - 1)
        self._counter = offset // self._segment_size
        self._buffer = bytearray()
        self.offset = offset
        # Anything past the stored offset is a torn write of a request that
        # died; it is cut off and rewritten.
        sink.seek(HEADER_BYTES + self._counter * (self._segment_size + TAG_BYTES))
        sink.truncate()

    @classmethod
    def start(cls, sink: BinaryIO, dek: bytes, length: int, segment_size: int = SEGMENT_SIZE) -> "ResumableWriter":
        sink.write(new_header(segment_size))
        writer = cls(sink, dek, length, 0)
        if length == 0:
            writer._seal(b"")
        return writer

    @property
    def complete(self) -> bool:
        return self.offset == self._length and self._counter > self._last_index

    def write(self, data: bytes) -> None:
        if self.offset + len(self._buffer) + len(data) > self._length:
            raise LengthExceeded("more bytes than the declared length")
        view = memoryview(data)
        while view:
            want = self._segment_size if self._counter < self._last_index else self._length - self.offset
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
        last = self._counter == self._last_index
        self._sink.write(self._aead.encrypt(_nonce(self._counter, last), plaintext, self._header))
        self._counter += 1
        self.offset += len(plaintext)


class SegmentReader:
    """Random access to the plaintext of one blob.

    Nothing is yielded from a segment before it has been authenticated, so a
    tampered segment stops the stream before any of its bytes go out.
    """

    def __init__(self, source: BinaryIO, dek: bytes, blob_size: int) -> None:
        header = source.read(HEADER_BYTES)
        segment_size, _ = _parse_header(header)
        body = blob_size - HEADER_BYTES
        stride = segment_size + TAG_BYTES
        self._segments = max(1, -(-body // stride))
        tail = body - (self._segments - 1) * stride
        if tail < TAG_BYTES:
            raise DecryptionError("truncated segment")
        self._source = source
        self._header = header
        self._aead = _file_aead(dek, header)
        self._segment_size = segment_size
        self._stride = stride
        self.size = body - self._segments * TAG_BYTES

    def _segment(self, index: int) -> bytes:
        self._source.seek(HEADER_BYTES + index * self._stride)
        sealed = self._source.read(self._stride)
        try:
            return self._aead.decrypt(_nonce(index, index == self._segments - 1), sealed, self._header)
        except (InvalidTag, ValueError):
            raise DecryptionError(f"segment {index} failed authentication") from None

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

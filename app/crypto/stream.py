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
        salt = os.urandom(SALT_BYTES)
        self._header = _HEADER.pack(MAGIC, VERSION, segment_size, salt)
        self._aead = AESGCM(derive(dek, "koerier/file/v1", salt))
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


class SegmentReader:
    """Random access to the plaintext of one blob.

    Nothing is yielded from a segment before it has been authenticated, so a
    tampered segment stops the stream before any of its bytes go out.
    """

    def __init__(self, source: BinaryIO, dek: bytes, blob_size: int) -> None:
        header = source.read(HEADER_BYTES)
        if len(header) != HEADER_BYTES:
            raise DecryptionError("truncated header")
        magic, version, segment_size, salt = _HEADER.unpack(header)
        if magic != MAGIC or version != VERSION or not 1024 <= segment_size <= 16 * 1024 * 1024:
            raise DecryptionError("not a Koerier blob")
        body = blob_size - HEADER_BYTES
        stride = segment_size + TAG_BYTES
        self._segments = max(1, -(-body // stride))
        tail = body - (self._segments - 1) * stride
        if tail < TAG_BYTES:
            raise DecryptionError("truncated segment")
        self._source = source
        self._header = header
        self._aead = AESGCM(derive(dek, "koerier/file/v1", salt))
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

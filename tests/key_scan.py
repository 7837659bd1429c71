"""An attacker's search through raw bytes for sealed secrets, knowing the
server's secret key.

Whatever the server can seal on its own is sealed under a key it can make
from its secret: HKDF under one of the labels in its code. ``wrap`` lays a
sealed value out as nonce || AES-GCM ciphertext || tag, and GCM encrypts
in counter mode, so at every offset of a file the candidate nonce gives the
key stream, and the key stream XOR the bytes after it is the plaintext. A
secret we know (a transfer's data key, a file name) that comes out at any
offset under any server key is recoverable from those bytes, whatever the
associated data was, wherever the bytes sit (a deleted row in the WAL, a
dead tuple, a free page). No row structure is assumed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from app.crypto.keys import NONCE_BYTES, derive

APP = Path(__file__).resolve().parent.parent / "app"
PAGE = 4096
CHUNK = 1 << 19


def server_keys(server_secret: bytes) -> dict[str, bytes]:
    """HKDF of the server secret under every "koerier/..." label in the app's code."""
    labels: set[str] = set()
    for path in APP.rglob("*.py"):
        labels |= set(re.findall(r"\"(koerier/[A-Za-z0-9_./-]+)\"", path.read_text()))
    return {label: derive(server_secret, label) for label in sorted(labels)}


def _regions(data: np.ndarray, margin: int) -> Iterator[tuple[int, int]]:
    """Runs of pages holding anything but zeros, widened by ``margin`` on both sides."""
    pages = np.pad(data, (0, -len(data) % PAGE)).reshape(-1, PAGE).any(axis=1)
    start = None
    for index, used in enumerate([*pages, False]):
        if used and start is None:
            start = index
        elif not used and start is not None:
            yield max(0, start * PAGE - margin), min(len(data), index * PAGE + margin)
            start = None


def find_sealed(blob: bytes, keys: dict[str, bytes], secrets: list[bytes]) -> list[tuple[str, int, bytes]]:
    """(key label, offset, secret) for every secret found sealed under one of ``keys``.

    Each secret's first 8 bytes are looked for at every offset (one AES block
    of key stream per offset and key); the rare match is then checked whole.
    """
    assert all(len(s) >= 16 for s in secrets), "short secrets would match by chance"
    data = np.frombuffer(blob, dtype=np.uint8)
    width = max(len(s) for s in secrets)
    last_offset = len(data) - NONCE_BYTES - width
    if last_offset < 0:
        return []
    nonces = np.lib.stride_tricks.sliding_window_view(data, NONCE_BYTES)
    heads = np.lib.stride_tricks.sliding_window_view(data, 8)
    wanted = np.array([np.frombuffer(s[:8], dtype=np.uint64)[0] for s in secrets], dtype=np.uint64)
    # GCM's first plaintext block is encrypted with counter 2 (J0 = nonce || 1).
    counter = np.frombuffer((2).to_bytes(4, "big"), dtype=np.uint8)
    found = []
    for lo, hi in _regions(data, NONCE_BYTES + width):
        for start in range(lo, min(hi, last_offset + 1), CHUNK):
            stop = min(start + CHUNK, hi, last_offset + 1)
            blocks = np.empty((stop - start, 16), dtype=np.uint8)
            blocks[:, :NONCE_BYTES] = nonces[start:stop]
            blocks[:, NONCE_BYTES:] = counter
            body = np.ascontiguousarray(heads[start + NONCE_BYTES : stop + NONCE_BYTES]).view(np.uint64)[:, 0]
            for label, key in keys.items():
                stream = np.frombuffer(Cipher(algorithms.AES(key), modes.ECB()).encryptor().update(blocks.tobytes()), dtype=np.uint8)
                first = np.ascontiguousarray(stream.reshape(-1, 16)[:, :8]).view(np.uint64)[:, 0] ^ body
                for hit in np.nonzero(np.isin(first, wanted))[0]:
                    offset = start + int(hit)
                    found += [(label, offset, s) for s in secrets if _opens(blob, offset, key, s)]
    return found


def _opens(blob: bytes, offset: int, key: bytes, secret: bytes) -> bool:
    nonce = blob[offset : offset + NONCE_BYTES]
    blocks = b"".join(nonce + (2 + j).to_bytes(4, "big") for j in range(-(-len(secret) // 16)))
    stream = Cipher(algorithms.AES(key), modes.ECB()).encryptor().update(blocks)
    body = blob[offset + NONCE_BYTES : offset + NONCE_BYTES + len(secret)]
    return bytes(a ^ b for a, b in zip(stream, body)) == secret


def find_plain(blob: bytes, secrets: list[bytes]) -> list[bytes]:
    return [s for s in secrets if s in blob]

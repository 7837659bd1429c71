"""Throughput of the encrypted segment format and the cost of one password unwrap.

Run by hand: ``python bench/crypto.py [MiB]``. Prints figures; asserts nothing.
"""

from __future__ import annotations

import io
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.crypto.keys import Argon2Params, new_key, password_kek  # noqa: E402
from app.crypto.stream import SegmentReader, SegmentWriter  # noqa: E402

CHUNK = 256 * 1024
# Blobs are bound to their transfer and file; any two ids do for timing.
IDS = {"transfer_id": "00000000-0000-4000-8000-000000000000", "file_id": "00000000-0000-4000-8000-000000000001"}


class Discard:
    """A sink that keeps nothing, so the figures show our code, not BytesIO growth."""

    def write(self, data: bytes) -> int:
        return len(data)


def rate(size: int, seconds: float) -> str:
    return f"{size / seconds / 1e6:8.1f} MB/s"


def main() -> None:
    mib = int(sys.argv[1]) if len(sys.argv) > 1 else 256
    data = os.urandom(mib * 1024 * 1024)
    dek = new_key()

    view = memoryview(data)
    start = time.perf_counter()
    sink = Discard()
    for i in range(0, len(data), CHUNK):
        sink.write(bytes(view[i : i + CHUNK]))  # the copy a request read makes
    copy_s = time.perf_counter() - start

    start = time.perf_counter()
    writer = SegmentWriter(Discard(), dek, **IDS)  # type: ignore[arg-type]
    for i in range(0, len(data), CHUNK):
        writer.write(bytes(view[i : i + CHUNK]))
    writer.close()
    enc_s = time.perf_counter() - start

    sealed = io.BytesIO()
    writer = SegmentWriter(sealed, dek, **IDS)
    writer.write(data)
    writer.close()
    blob = sealed.getvalue()
    start = time.perf_counter()
    total = 0
    for chunk in SegmentReader(io.BytesIO(blob), dek, len(blob), **IDS).iter_range():
        total += len(chunk)
    dec_s = time.perf_counter() - start
    assert total == len(data)

    params = Argon2Params(3, 64 * 1024, 4)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    password_kek("Zonnebloem-Kade-1987!", os.urandom(16), params)
    argon_s = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    print(f"{mib} MiB of random data, chunks of {CHUNK // 1024} KiB")
    print(f"  read chunks (baseline)  {rate(len(data), copy_s)}")
    print(f"  encrypt (AES-256-GCM)  {rate(len(data), enc_s)}   {copy_s / enc_s:5.2f} x baseline")
    print(f"  decrypt                {rate(len(data), dec_s)}   {copy_s / dec_s:5.2f} x baseline")
    print(f"  overhead on disk       {len(blob) - len(data)} bytes ({(len(blob) / len(data) - 1) * 100:.3f} %)")
    print(f"  Argon2id t=3 m=64MiB p=4: {argon_s * 1000:.0f} ms, peak RSS grew {(after - before) / 1024:.0f} MiB")


if __name__ == "__main__":
    main()

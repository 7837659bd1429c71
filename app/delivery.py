"""Handing files out: decrypted segment by segment while they are sent."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from zipstream import ZIP_STORED, ZipStream

from . import metrics
from .crypto.keys import DecryptionError, open_text
from .crypto.stream import SegmentReader
from .models import StoredFile, Transfer
from .portal import Portal

# Served inline only for these; everything else is a download. Scripts in an
# SVG or HTML file would otherwise run in the portal's origin.
PREVIEWABLE = {
    "application/pdf", "image/png", "image/jpeg", "image/gif", "image/webp", "text/plain",
    # Players fetch these with Range requests, which are served segment-wise.
    "video/mp4", "video/webm", "audio/mpeg", "audio/ogg",
}


@dataclass(frozen=True)
class FileInfo:
    id: str
    name: str
    content_type: str
    size: int

    @property
    def previewable(self) -> bool:
        # An empty file has nothing to show; a viewer would show an error.
        return self.content_type in PREVIEWABLE and self.size > 0


def describe(dek: bytes, stored: StoredFile) -> FileInfo:
    return FileInfo(
        stored.id, open_text(dek, "name", stored.id, stored.name_ct),
        open_text(dek, "type", stored.id, stored.type_ct), stored.size,
    )


def message(dek: bytes, transfer: Transfer) -> str:
    return open_text(dek, "message", transfer.id, transfer.message_ct) if transfer.message_ct else ""


def stream(portal: Portal, dek: bytes, stored: StoredFile, start: int = 0, end: int | None = None) -> Iterator[bytes]:
    """Plaintext of bytes ``start``..``end`` (inclusive); raises DecryptionError mid-way on tampering."""
    with portal.store.open(stored.blob_key) as fh:
        size = portal.store.size(stored.blob_key)
        reader = SegmentReader(fh, dek, size, transfer_id=str(stored.transfer_id), file_id=stored.id)
        if reader.size != stored.size:
            raise DecryptionError("blob size does not match the record")
        yield from metrics.counted_download(reader.iter_range(start, end))


def zip_all(portal: Portal, dek: bytes, files: list[StoredFile]) -> ZipStream:
    """A stored (uncompressed) ZIP whose length is known before the first byte.

    Stored, because the files are mostly PDFs, scans and archives that do not
    compress, and a known length lets the browser show real progress.
    """
    archive = ZipStream(compress_type=ZIP_STORED, sized=True)
    used: set[str] = set()
    for stored in files:
        name = _unique(describe(dek, stored).name, used)
        archive.add(stream(portal, dek, stored), name, size=stored.size)
    return archive


def _unique(name: str, used: set[str]) -> str:
    candidate, n = name, 1
    stem, dot, ext = name.rpartition(".")
    while candidate.lower() in used:
        n += 1
        candidate = f"{stem} ({n}).{ext}" if dot else f"{name} ({n})"
    used.add(candidate.lower())
    return candidate

"""Resumable uploads (tus 1.0): the rules, without HTTP.

An upload belongs to one draft. Its bytes are sealed segment by segment as
they arrive (see ``ResumableWriter``) into a pending blob; only whole
segments are stored, and the offset a client is told is the offset that is
on disk and synced. Once the last byte is in, the blob is published and the
upload becomes a file of the draft, exactly like one sent by the plain form.

The row's ``reserved_segments`` is committed ahead of sealing, so a request
killed mid-way leaves a mark the next one sees; that upload then starts over
under a new file key (docs/FORMAT.md, "Resumable uploads").
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import BinaryIO

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import drafts, metrics
from .clock import utcnow
from .crypto.stream import SEGMENT_SIZE, ResumableWriter
from .models import Draft, StoredFile, Upload
from .policy import Limits
from .portal import Portal
from .storage import BlobBusy
from .uploads import clean_filename, sealed_name_and_type

# Segment indices reserved by one commit while an upload is written: 64 MiB
# at the default segment size, so commits stay rare next to the bytes.
RESERVE_SEGMENTS = 64 * 1024 * 1024 // SEGMENT_SIZE


class Refused(Exception):
    """The upload is not accepted; ``why`` is "extension", "count" or "size"."""

    def __init__(self, name: str, why: str) -> None:
        super().__init__(f"{name}: {why}")
        self.name, self.why = name, why


class OffsetMismatch(Exception):
    """The client's idea of the offset differs from what is stored."""


class Busy(Exception):
    """Another request is writing this upload right now."""


class Gone(Exception):
    """The upload's stored bytes are lost; the client must start again."""


class BadMetadata(ValueError):
    pass


def parse_metadata(header: str) -> dict[str, str]:
    """``Upload-Metadata``: comma-separated "key base64(value)" pairs."""
    result: dict[str, str] = {}
    for pair in filter(None, (p.strip() for p in header.split(","))):
        key, _, encoded = pair.partition(" ")
        if not key or " " in encoded.strip() or key in result:
            raise BadMetadata(f"malformed metadata pair {pair[:40]!r}")
        try:
            result[key] = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise BadMetadata(f"metadata {key!r} is not base64 of UTF-8") from None
    return result


def expires_at(portal: Portal, upload: Upload) -> datetime:
    """Unfinished uploads last as long as an idle draft does."""
    return upload.updated_at + timedelta(hours=portal.settings.transfer.draft_ttl_hours)


def create(
    db: Session, portal: Portal, draft: Draft, length: int, metadata: dict[str, str], limits: Limits,
    now: datetime | None = None,
) -> Upload | StoredFile:
    """A new upload, or at once a stored file when it is empty."""
    now = now or utcnow()
    name = clean_filename(metadata.get("filename") or metadata.get("name") or "")
    if not limits.extension_allowed(name):
        raise Refused(name, "extension")
    if len(draft.files) + len(draft.uploads) >= limits.max_files:
        raise Refused(name, "count")
    if drafts.reserved_bytes(draft) + length > limits.max_total_bytes:
        raise Refused(name, "size")
    dek = drafts.data_key(draft)
    upload = Upload(
        id=str(uuid.uuid4()), draft=draft, blob_key=portal.store.new_key(), length=length, offset=0,
        reserved_segments=0, created_at=now, updated_at=now,
    )
    upload.name_ct, upload.type_ct = sealed_name_and_type(dek, upload.id, name)
    # Added first: sealing an empty file's one segment commits its reservation.
    db.add(upload)
    with portal.store.open_pending(upload.blob_key, create=True) as fh:
        writer = ResumableWriter.start(
            fh, dek, length, _reserver(db, draft, upload), transfer_id=draft.transfer_id, file_id=upload.id,
        )
        portal.store.persist(fh)
    drafts.touch(draft, now)
    if writer.complete:
        return _finish(db, portal, draft, upload)
    return upload


def find(db: Session, portal: Portal, draft: Draft, upload_id: str, now: datetime | None = None) -> Upload | StoredFile | None:
    """The draft's upload, or the file it became; None when unknown or expired."""
    upload = db.scalar(select(Upload).where(Upload.id == upload_id, Upload.draft_id == draft.id))
    if upload is not None:
        return upload if expires_at(portal, upload) > (now or utcnow()) else None
    return db.scalar(select(StoredFile).where(StoredFile.id == upload_id, StoredFile.draft_id == draft.id))


def append(
    db: Session, portal: Portal, draft: Draft, upload: Upload, offset: int, chunks: Iterable[bytes],
) -> Upload | StoredFile:
    """Store the bytes from ``offset`` on; returns the upload, or the file once complete.

    Commits as it goes: each reservation of segment indices before they are
    sealed, and the offset (with the reservation brought down to what was
    sealed) when the request ends, also when ``chunks`` raises because the
    client went away: that exception propagates after the progress is
    recorded. A request that dies without reaching its end (a killed worker)
    leaves the reservation ahead of the offset, and the next request starts
    the upload over at offset 0 under a new file key, answering
    OffsetMismatch unless the client asked for offset 0.
    """
    dek = drafts.data_key(draft)
    try:
        fh = portal.store.open_pending(upload.blob_key)
    except BlobBusy:
        raise Busy(upload.id) from None
    except FileNotFoundError:
        raise Gone(upload.id) from None
    with fh:
        # Read under the lock: the request that held it before may have
        # stored more since this request read the row.
        db.refresh(upload)
        writer = ResumableWriter(
            fh, dek, upload.length, upload.offset, upload.reserved_segments, _reserver(db, draft, upload),
            transfer_id=draft.transfer_id, file_id=upload.id,
        )
        # Any commit from here on (a reservation) must not claim the old offset.
        upload.offset = writer.offset
        try:
            if offset != writer.offset:
                raise OffsetMismatch(f"offset {offset}, stored {writer.offset}")
            for chunk in chunks:
                writer.write(chunk)
        finally:
            _record(db, portal, fh, draft, upload, writer)
    if writer.complete:
        return _finish(db, portal, draft, upload)
    return upload


def _reserver(db: Session, draft: Draft, upload: Upload) -> Callable[[int], int]:
    def reserve(index: int) -> int:
        upload.reserved_segments = index + RESERVE_SEGMENTS
        upload.updated_at = utcnow()
        drafts.touch(draft)
        db.commit()
        return upload.reserved_segments

    return reserve


def _record(db: Session, portal: Portal, fh: BinaryIO, draft: Draft, upload: Upload, writer: ResumableWriter) -> None:
    # Synced before it is committed: the database never claims bytes, or a
    # new header, that the disk might not have after a power cut. If this
    # raises, the reservation stays ahead and the upload starts over.
    portal.store.persist(fh)
    metrics.UPLOAD_BYTES.labels("tus").inc(writer.offset - upload.offset)
    upload.offset = writer.offset
    # Every index sealed under the header, a failed write's included; ahead
    # of the offset's segments only when a write failed.
    upload.reserved_segments = writer.spent
    upload.updated_at = utcnow()
    drafts.touch(draft)
    db.commit()


def _finish(db: Session, portal: Portal, draft: Draft, upload: Upload) -> StoredFile:
    # Published before the row is committed: a crash in between leaves a
    # blob the upload row still names (removed with it), never a file row
    # without its blob.
    portal.store.publish(upload.blob_key)
    stored = StoredFile(
        id=upload.id, position=len(draft.files) + 1, blob_key=upload.blob_key, size=upload.length,
        name_ct=upload.name_ct, type_ct=upload.type_ct,
    )
    draft.uploads.remove(upload)
    db.add(stored)
    draft.files.append(stored)
    drafts.touch(draft)
    db.commit()
    return stored


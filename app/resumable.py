"""Resumable uploads (tus 1.0): the rules, without HTTP.

An upload belongs to one draft. Its bytes are sealed segment by segment as
they arrive (see ``ResumableWriter``) into a pending blob; only whole
segments are stored, and the offset a client is told is the offset that is
on disk and synced. Once the last byte is in, the blob is published and the
upload becomes a file of the draft, exactly like one sent by the plain form.
"""

from __future__ import annotations

import base64
import binascii
import time
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import drafts
from .clock import utcnow
from .crypto.stream import ResumableWriter
from .models import Draft, StoredFile, Upload
from .policy import Limits
from .portal import Portal
from .storage import BlobBusy
from .uploads import clean_filename, sealed_name_and_type

# How often a long PATCH records its progress: at most this much sending
# time is lost when a connection drops without the server noticing at once.
CHECKPOINT_SECONDS = 10.0


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
        created_at=now, updated_at=now,
    )
    upload.name_ct, upload.type_ct = sealed_name_and_type(dek, upload.id, name)
    with portal.store.open_pending(upload.blob_key, create=True) as fh:
        writer = ResumableWriter.start(fh, dek, length)
        portal.store.persist(fh)
    drafts.touch(draft, now)
    if writer.complete:
        return _finish(db, portal, draft, upload)
    db.add(upload)
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

    Progress is committed as it goes (not at the end of the request), so a
    connection that drops half-way keeps every whole segment that arrived.
    An exception from ``chunks`` (the client went away) propagates after
    that progress is recorded.
    """
    dek = drafts.data_key(draft)
    try:
        fh = portal.store.open_pending(upload.blob_key)
    except BlobBusy:
        raise Busy(upload.id) from None
    except FileNotFoundError:
        raise Gone(upload.id) from None
    with fh:
        # Checked under the lock: the request that held it before may have
        # stored more since this request read the row.
        db.refresh(upload)
        if offset != upload.offset:
            raise OffsetMismatch(f"offset {offset}, stored {upload.offset}")
        writer = ResumableWriter(fh, dek, upload.length, upload.offset)
        last_checkpoint = time.monotonic()
        try:
            for chunk in chunks:
                writer.write(chunk)
                if time.monotonic() - last_checkpoint >= CHECKPOINT_SECONDS:
                    _checkpoint(db, portal, fh, draft, upload, writer.offset)
                    last_checkpoint = time.monotonic()
        finally:
            _checkpoint(db, portal, fh, draft, upload, writer.offset)
    if writer.complete:
        return _finish(db, portal, draft, upload)
    return upload


def _checkpoint(db: Session, portal: Portal, fh, draft: Draft, upload: Upload, offset: int) -> None:  # type: ignore[no-untyped-def]
    # Synced before the offset is committed: the database never claims
    # bytes the disk might not have after a power cut.
    portal.store.persist(fh)
    if offset != upload.offset:
        upload.offset = offset
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


def terminate(db: Session, portal: Portal, draft: Draft, found: Upload | StoredFile) -> None:
    """tus termination: an unfinished upload goes; a finished one leaves the draft."""
    if isinstance(found, StoredFile):
        drafts.remove_file(db, portal, draft, found.id)
        return
    draft.uploads.remove(found)
    # The blob is ciphertext under the draft's key, so it may go before the
    # row's deletion commits.
    portal.store.delete(found.blob_key)
    drafts.touch(draft)

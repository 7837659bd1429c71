"""Resumable uploads (tus 1.0): the rules, without HTTP.

An upload belongs to one draft. Its bytes are sealed segment by segment as
they arrive (see ``ResumableWriter``) into the store's pending blob; only
whole segments are stored, and the offset a client is told is the offset
that is stored and committed. Once the last byte is in, the blob is
published, the upload recorded as complete, its first bytes checked
against its name (app/true_types.py) and, where the rules require it, the
file scanned (``uploads.screen``); only then does the upload become
a file of the draft, exactly like one sent by the plain form. A complete
upload the scanner could not judge stays, complete: a PATCH at its end,
without a body, asks for the verdict again, and nothing is sent twice.

How the stores keep a segment index from ever being stored twice under one
file key with different contents, whatever crashes, is theirs to say
(app/storage.py, app/s3_store.py; docs/FORMAT.md, "Resumable uploads"):
when they cannot vouch for what was sealed beyond the offset, the upload
starts over under a new file key.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.exc import ObjectDeletedError, StaleDataError

from . import drafts, metrics, scanning, true_types, upload_limits, uploads
from .clock import utcnow
from .crypto.keys import open_text
from .crypto.stream import ResumableWriter, SegmentReader
from .models import Draft, StoredFile, Upload
from .policy import Limits
from .portal import Portal
from .storage import UploadBusy, UploadGone
from .upload_limits import Leases
from .uploads import OpenUpload, clean_filename, sealed_name_and_type

DRAFT_TOUCH_INTERVAL = timedelta(minutes=1)
# Run at every chunk, so built once (with its cache key); a store's progress
# names the columns it changes when it is executed.
_DRAFTS_UPLOAD = select(Upload).where(Upload.id == bindparam("upload_id"), Upload.draft_id == bindparam("draft_id"))
_PROGRESS = update(Upload).where(Upload.id == bindparam("upload_id"))

class Refused(Exception):
    """The upload is not accepted; ``why`` is "extension", "count", "size",
    "quota", "type_program", "type_script", "type_archive" (its content
    not what its name says; the upload is
    gone), "unscannable" (too large to scan), "incomplete" (the scanner
    could not check all of its content; gone), "infected" (with the
    ``signature`` found; the upload is gone), or "scanner" (no verdict now;
    the complete upload stays, to be judged again)."""

    def __init__(self, name: str, why: str, signature: str = "") -> None:
        super().__init__(f"{name}: {why}")
        self.name, self.why, self.signature = name, why, signature


class OffsetMismatch(Exception):
    """The client's idea of the offset differs from what is stored."""


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
    if limits.scan == "required" and length > portal.settings.scan.max_stream_bytes:
        raise Refused(name, "unscannable")
    dek = drafts.data_key(draft)
    drafts.touch(draft, now)
    if length == 0:
        # Nothing to resume: one empty segment, written like a form's file;
        # nothing in it for a scanner to find.
        scanned = scanning.CLEAN if limits.scan == "required" else scanning.NOT_REQUIRED
        stored = OpenUpload(portal, dek, name, draft.transfer_id).finish(draft, len(draft.files) + 1, scanned)
        db.add(stored)
        return stored
    upload = Upload(
        id=str(uuid.uuid4()), draft=draft, blob_key=portal.store.new_key(), length=length, offset=0,
        reserved_segments=0, created_at=now, updated_at=now,
    )
    upload.name_ct, upload.type_ct = sealed_name_and_type(dek, upload.id, name)
    portal.store.begin(upload)
    db.add(upload)
    return upload


def find(db: Session, portal: Portal, draft: Draft, upload_id: str, now: datetime | None = None) -> Upload | StoredFile | None:
    """The draft's upload, or the file it became; None when unknown or expired."""
    upload = db.scalar(_DRAFTS_UPLOAD, {"upload_id": upload_id, "draft_id": draft.id})
    if upload is not None:
        return upload if expires_at(portal, upload) > (now or utcnow()) else None
    return db.scalar(select(StoredFile).where(StoredFile.id == upload_id, StoredFile.draft_id == draft.id))


def append(
    db: Session, portal: Portal, draft: Draft, upload: Upload, offset: int, chunks: Iterable[bytes | memoryview],
    limits: Limits, leases: Leases, ip: str = "",
) -> Upload | StoredFile:
    """Store the bytes from ``offset`` on; returns the upload, or the file once complete and admitted.

    Commits as it goes (the store says when), and the offset when the
    request ends, also when ``chunks`` raises because the client went away:
    that exception propagates after the progress is recorded. Raises
    OffsetMismatch when ``offset`` is not the stored one, Refused when the
    complete file is not admitted (see ``_finish``), UploadBusy also while
    another request judges it, and the store's UploadGone, UploadRestarted
    or StorageUnavailable.
    """
    if upload.offset == upload.length:
        # Complete already, without a verdict: asked for again, nothing is read.
        if offset != upload.offset:
            raise OffsetMismatch(f"offset {offset}, stored {upload.offset}")
        return _finish(db, portal, draft, upload, limits, ip, leases, again=True)
    dek = drafts.data_key(draft)

    upload_id = upload.id  # for the commits after one found the row gone, and the session rolled back

    def commit(**columns: object) -> None:
        now = utcnow()
        try:
            # The draft's idle time counts in hours: a write of its row at every
            # commit of every chunk would say nothing more. Written before the
            # upload's row, in the order a removal (``drafts.remove_file``)
            # locks them: the other order can deadlock with it on PostgreSQL.
            if now - draft.updated_at > DRAFT_TOUCH_INTERVAL:
                drafts.touch(draft, now)
                db.flush()
            if columns:
                # The local store's marks, twice at every chunk: one statement,
                # where the session's flush of the changed row took as long as
                # the commit's sync.
                values = {**columns, "updated_at": now}
                if not db.connection().execute(_PROGRESS, {"upload_id": upload_id, **values}).rowcount:
                    raise StaleDataError(f"upload {upload_id} is gone")
                for key, value in values.items():
                    set_committed_value(upload, key, value)
            else:
                upload.updated_at = now
            db.commit()
        except (StaleDataError, ObjectDeletedError):
            # Removed by its sender (another tab), or its draft discarded,
            # meanwhile. Rolled back at once: on SQLite the failed write holds
            # the database's lock, which the release of the upload's leases waits for.
            db.rollback()
            raise UploadGone(upload_id) from None

    with portal.store.resume(db, upload, commit) as pending:
        writer = ResumableWriter(
            dek, pending.header, upload.length, pending.offset, pending.put,
            transfer_id=draft.transfer_id, file_id=upload.id,
        )
        start = pending.offset
        try:
            if offset != pending.offset:
                raise OffsetMismatch(f"offset {offset}, stored {pending.offset}")
            for chunk in chunks:
                writer.write(chunk)
        finally:
            pending.save(writer.offset, writer.complete)
            metrics.UPLOAD_BYTES.labels("tus").inc(writer.offset - start)
        if writer.complete:
            return _finish(db, portal, draft, upload, limits, ip, leases)
    return upload


def _finish(
    db: Session, portal: Portal, draft: Draft, upload: Upload, limits: Limits, ip: str, leases: Leases,
    again: bool = False,
) -> StoredFile:
    """The complete upload becomes a file of the draft, once its true type
    check (on its first segment, decrypted) and the scanner let it in.

    One request at a time judges it, on whichever node: it holds a lease
    named after the upload (renewed while it scans, expired if its worker
    dies), and another meanwhile gets UploadBusy. Two at once would both
    scan the file, audit a detection twice, and both make its file row.
    A request that asks ``again`` may find the verdict made by the one
    before it: the file in, or (UploadGone) kept out.
    """
    try:
        with leases.hold(draft.id, [(upload_limits.subject_key("verdict", upload.id), 1)]):
            if again and (decided := _decided(db, draft, upload)) is not None:
                return decided
            return _judge(db, portal, draft, upload, limits, ip)
    except upload_limits.TooManyUploads:
        raise UploadBusy(upload.id) from None


def _decided(db: Session, draft: Draft, upload: Upload) -> StoredFile | None:
    """The file that a request judging the upload before this one let in;
    None when the upload still waits; UploadGone when it was kept out."""
    # A fresh snapshot: SQLite's would still be the one from before the lease.
    db.commit()
    if db.scalar(select(Upload.id).where(Upload.id == upload.id)) is not None:
        return None
    stored = db.scalar(select(StoredFile).where(StoredFile.id == upload.id, StoredFile.draft_id == draft.id))
    if stored is None:
        raise UploadGone(upload.id)
    return stored


def _judge(db: Session, portal: Portal, draft: Draft, upload: Upload, limits: Limits, ip: str) -> StoredFile:
    """The store published the blob before the first commit here: a crash in
    between leaves a blob the upload row still names (removed with it),
    never a file row without its blob. Recorded complete before the scan,
    the upload can be judged again after a scanner outage or a crash.
    """
    upload.offset = upload.length
    drafts.touch(draft)
    upload_id = upload.id
    try:
        db.commit()
    except StaleDataError:
        # Removed by its sender meanwhile: its published blob is an orphan, swept later.
        db.rollback()
        raise UploadGone(upload_id) from None
    name = open_text(drafts.data_key(draft), "name", upload.id, upload.name_ct)
    try:
        disguise = portal.settings.transfer.check_content_type and uploads.disguised(
            db, draft, name, _head(portal, draft, upload), upload.length, ip
        )
        screening = uploads.Screening() if disguise else uploads.screen(
            db, portal, draft, upload.blob_key, upload.length, upload.id, limits, ip
        )
    except Exception:
        db.rollback()
        if uploads.still_there(db, upload):
            raise
        raise UploadGone(upload.id) from None  # its blob went with it, while it was read
    # The sender may have removed it (Cancel, or another tab) while it was
    # scanned: the removal stands. Locked until the verdict is committed, so
    # that a removal now waits for it.
    if not uploads.still_there(db, upload, lock=True):
        db.commit()  # the verdict stays on the record
        raise UploadGone(upload.id)
    if disguise:
        draft.uploads.remove(upload)
        uploads.forget_blob(portal, upload.blob_key)
        db.commit()
        raise Refused(name, disguise)
    if (refusal := screening.refusal) is not None:
        if refusal.result != scanning.UNAVAILABLE:
            draft.uploads.remove(upload)
            uploads.forget_blob(portal, upload.blob_key)
        db.commit()
        if refusal.result == scanning.INFECTED:
            raise Refused(name, "infected", refusal.detail)
        raise Refused(name, uploads.refusal_reason(refusal))
    stored = StoredFile(
        id=upload.id, position=len(draft.files) + 1, blob_key=upload.blob_key, size=upload.length,
        name_ct=upload.name_ct, type_ct=upload.type_ct, scanned=screening.mark,
    )
    draft.uploads.remove(upload)
    db.add(stored)
    draft.files.append(stored)
    drafts.touch(draft)
    db.commit()
    return stored


def _head(portal: Portal, draft: Draft, upload: Upload) -> bytes:
    """The first bytes of the complete upload, for the true type check: its
    first segment, decrypted; whatever the requests that brought them in, so
    a first request of a single byte changes nothing."""
    with portal.store.open(upload.blob_key) as fh:
        size = portal.store.size(upload.blob_key)
        reader = SegmentReader(fh, drafts.data_key(draft), size, transfer_id=draft.transfer_id, file_id=upload.id)
        return b"".join(reader.iter_range(0, min(reader.size, true_types.HEAD_BYTES) - 1))

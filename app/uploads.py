"""Receiving files from a plain HTML form without ever holding plaintext.

Werkzeug's own form parser spools large files into temporary files, which
would put plaintext on disk. Here the multipart body is decoded as it
streams in and each file's bytes go straight into a ``SegmentWriter``, so
what reaches the disk is ciphertext and at most one 64 KiB segment is in
memory per upload.

The CSRF token must be the body's first part (the form puts it first) and
is checked as soon as it ends: no other part of a forged request is read.
"""

from __future__ import annotations

import itertools
import logging
import mimetypes
import unicodedata
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData

from . import audit, drafts, metrics, scanning, true_types
from . import db as dbmod
from .crypto.keys import open_text, seal_text
from .crypto.stream import SegmentReader, SegmentWriter
from .models import Draft, StoredFile, Upload
from .policy import Limits
from .portal import Portal
from .storage import StorageUnavailable

log = logging.getLogger(__name__)

READ_SIZE = 64 * 1024
# Beside one read in the decoder's buffer: room for a part's headers (a
# browser sends a few hundred bytes), or a preamble, or an epilogue.
HEADER_ROOM = 8 * 1024
# RFC 2046: a boundary has at most 70 characters.
MAX_BOUNDARY = 70
TOKEN_LIMIT = 1024
FIELD_LIMIT = 256 * 1024
FIELDS_LIMIT = 512 * 1024
# Parts beyond the files a transfer may hold: the form's own fields, and
# files past the limit, which are refused one by one with a message.
EXTRA_PARTS = 100
MAX_NAME_CHARS = 200
# Characters that make a name lie about itself: bidi overrides and isolates
# ("invoice\u202Efdp.exe"), zero-width characters.
_INVISIBLE = {0x200B, 0x200C, 0x200D, 0x200E, 0x200F, 0x2060, 0xFEFF, *range(0x202A, 0x202F), *range(0x2066, 0x206A)}


class UploadRejected(Exception):
    """The whole request is refused (bad CSRF token, malformed body)."""


@dataclass
class Received:
    fields: dict[str, str] = field(default_factory=dict)
    added: list[StoredFile] = field(default_factory=list)
    # (file name, why): "extension", "count", "size", "quota", "space", "drafts", "type_program",
    # "type_script", "type_archive" (content not what the name says), "unscannable" (too large to scan),
    # "incomplete" (the scanner could not check all of its content), "encrypted" (protected with a
    # password, which the scanner cannot look into) or "scanner" (no verdict to be had); nothing of
    # these was stored. (``screen_files`` has its own.)
    refused: list[tuple[str, str]] = field(default_factory=list)
    # (file name, signature): refused, the scanner found malware in them.
    infected: list[tuple[str, str]] = field(default_factory=list)


_WINDOWS_FORBIDDEN = str.maketrans(dict.fromkeys('<>:"|?*', "_"))
# Windows opens the device, not a file, for these names with any extension.
_WINDOWS_DEVICES = {
    "CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$",
    *(f"{port}{n}" for port in ("COM", "LPT") for n in "0123456789\u00b9\u00b2\u00b3"),
}


def clean_filename(raw: str) -> str:
    """A display name that is also a safe file name where it is saved.

    No path (``/`` or ``\\``, and no drive: ``C:evil.txt`` is a path on
    drive C), no control or invisible characters, bounded; and nothing
    Windows would read otherwise: the characters ``<>:"|?*``, trailing dots
    and spaces, and device names such as ``CON.txt`` or ``aux.tar.gz``, so a
    file saved from a download or unpacked from "Download all" lands where
    its name says.
    """
    name = raw.replace("\\", "/").rsplit("/", 1)[-1]
    name = unicodedata.normalize("NFC", name)
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C" and ord(ch) not in _INVISIBLE)
    if name[1:2] == ":" and name[:1].isascii() and name[:1].isalpha():
        name = name[2:]
    name = name.translate(_WINDOWS_FORBIDDEN).strip(" .")
    if len(name) > MAX_NAME_CHARS:
        stem, dot, ext = name.rpartition(".")
        keep = ext if dot and len(ext) <= 10 else ""
        name = name[: MAX_NAME_CHARS - len(keep) - 1].rstrip(" .") + ("." + keep if keep else "")
    if name.split(".", 1)[0].rstrip(" ").upper() in _WINDOWS_DEVICES:
        name = "_" + name
    return name or "file"


def content_type_for(name: str) -> str:
    """Judged from the name, never from what the browser claims."""
    return mimetypes.guess_type(name, strict=False)[0] or "application/octet-stream"


def sealed_name_and_type(dek: bytes, file_id: str, name: str) -> tuple[bytes, bytes]:
    """A file's name and content type, sealed as ``delivery.describe`` opens them."""
    return seal_text(dek, "name", file_id, name), seal_text(dek, "type", file_id, content_type_for(name))


def read_filled(stream: BinaryIO, buffer: bytearray | memoryview, length: int | None) -> Iterator[memoryview]:
    """A body of ``length`` bytes (None: up to the stream's end), read into
    ``buffer``, refilled for each chunk: a chunk is good only until the
    next one is asked for.

    Every chunk but the last fills the buffer, whatever the network hands
    over per read, so a buffer of whole segments is sealed straight from
    it, without a copy; no buffer is made per read.

    A read that fails (the connection reset, a read timed out, the body
    past its limit) raises only once what was read before it has been
    handed over: the bytes that arrived are kept as far as they go, and a
    body too long reaches whoever checks its length.
    """
    # A slice of a view is the buffer's memory; of a bytearray it would be a copy, read into in vain.
    buffer = memoryview(buffer).cast("B")
    size = len(buffer)
    left = length
    while left is None or left > 0:
        want = size if left is None else min(size, left)
        filled = 0
        try:
            while filled < want and (count := stream.readinto(buffer[filled:want])):
                filled += count
        except Exception:
            if filled:
                yield buffer[:filled]
            raise
        if filled:
            yield buffer[:filled]
        if filled < want:
            return
        if left is not None:
            left -= filled


def receive(
    db: Session,
    portal: Portal,
    draft: Draft,
    stream: BinaryIO,
    boundary: bytes,
    check_csrf: Callable[[str], bool],
    limits: Limits,
    quota_left: int | None = None,
    refuse_files: str | None = None,
    ip: str = "",
) -> Received:
    """Store the files of a multipart body as it streams; all of them, or none on an exception.

    Files that would take the sender past ``quota_left`` bytes are refused
    ("quota"); with ``refuse_files`` ("space", "drafts") every file is
    refused for that reason and only the fields are kept.

    Every buffer is bounded, whatever the body: the decoder's (the preamble,
    part headers and an epilogue live there beside one read), each field,
    all fields together, and the number of parts. The first part must be
    the CSRF token, checked as soon as it ends, so nothing else of a forged
    request is even read. A bound passed raises ``UploadRejected`` at once,
    leaving the rest of the body unread.
    """
    if not 0 < len(boundary) <= MAX_BOUNDARY:
        raise UploadRejected("the multipart boundary must have 1 to 70 characters")
    dek = drafts.data_key(draft)
    scan_limit = portal.settings.scan.max_stream_bytes
    scanner = scanning.Clamd(portal.settings.scan)
    check_types = portal.settings.transfer.check_content_type
    # Werkzeug's decoder keeps a part's header, a preamble or an epilogue in
    # its buffer until it ends; while file data streams it holds at most one
    # read plus a possible partial boundary. Its max_form_memory_size bounds
    # that buffer, so the room beyond one read is all a header may take.
    decoder = MultipartDecoder(
        boundary, max_form_memory_size=READ_SIZE + HEADER_ROOM, max_parts=limits.max_files + EXTRA_PARTS
    )
    result = Received()
    used = drafts.reserved_bytes(draft)
    added = 0
    count = len(draft.files) + len(draft.uploads)
    csrf_ok = False
    field_name: str | None = None
    field_buf = bytearray()
    field_bytes = 0
    upload: OpenUpload | None = None
    skipping = False

    def finish_field() -> None:
        nonlocal csrf_ok
        value = field_buf.decode("utf-8", errors="replace")
        if not csrf_ok:
            csrf_ok = check_csrf(value)
            if not csrf_ok:
                raise UploadRejected("CSRF token wrong")
        elif field_name:
            result.fields[field_name] = value

    try:
        for chunk in itertools.chain(read_filled(stream, bytearray(READ_SIZE), None), [None]):
            decoder.receive_data(chunk)
            while not isinstance(event := decoder.next_event(), NeedData):
                first_not_token = isinstance(event, File) or (isinstance(event, Field) and event.name != "csrf_token")
                if first_not_token and not csrf_ok:
                    raise UploadRejected("the CSRF token must be the first part")
                if isinstance(event, Field):
                    field_name, field_buf = event.name, bytearray()
                elif isinstance(event, File):
                    name = clean_filename(event.filename or "")
                    skipping = not event.filename
                    if not skipping and not limits.extension_allowed(name):
                        result.refused.append((name, "extension"))
                        skipping = True
                    if not skipping and count >= limits.max_files:
                        result.refused.append((name, "count"))
                        skipping = True
                    if not skipping and refuse_files:
                        result.refused.append((name, refuse_files))
                        skipping = True
                    if not skipping:
                        upload = OpenUpload(portal, dek, name, draft.transfer_id)
                        count += 1
                    field_name = None
                elif isinstance(event, Data):
                    if upload is not None:
                        grown = upload.size + len(event.data)
                        too_big = used + grown > limits.max_total_bytes
                        over = (
                            "size" if too_big else "quota" if quota_left is not None and added + grown > quota_left
                            else "unscannable" if limits.scan == "required" and grown > scan_limit else None
                        )
                        if over:
                            upload.abort()
                            result.refused.append((upload.name, over))
                            upload, skipping = None, True
                            count -= 1
                        else:
                            upload.write(event.data)
                    elif field_name is not None and not skipping:
                        field_buf += event.data
                        field_bytes += len(event.data)
                        if len(field_buf) > (FIELD_LIMIT if csrf_ok else TOKEN_LIMIT) or field_bytes > FIELDS_LIMIT:
                            raise UploadRejected(f"form field {field_name!r} is too large")
                    if not event.more_data:
                        if upload is not None and check_types and (disguise := disguised(
                            db, draft, upload.name, upload.head, upload.size, ip
                        )):
                            upload.abort()
                            result.refused.append((upload.name, disguise))
                            upload = None
                            count -= 1
                        if upload is not None:
                            done, upload = upload, None
                            done.close()
                            screening = screen_or_forget(
                                db, portal, draft, done.blob_key, done.size, done.id, limits, ip, scanner
                            )
                            if (refusal := screening.refusal) is None:
                                result.added.append(done.stored(draft, position=count, scanned=screening.mark))
                                used += done.size
                                added += done.size
                            else:
                                count -= 1
                                if refusal.result == scanning.INFECTED:
                                    result.infected.append((done.name, refusal.detail))
                                else:
                                    result.refused.append((done.name, refusal_reason(refusal)))
                        elif field_name is not None:
                            finish_field()
                            field_name = None
                        skipping = False
                elif isinstance(event, Epilogue):
                    break
        if not csrf_ok:
            raise UploadRejected("CSRF token missing")
    except (ValueError, RequestEntityTooLarge) as exc:
        # How Werkzeug's decoder says that a body is malformed or passed a bound.
        _forget(db, portal, draft, result.added)
        raise UploadRejected(str(exc)) from None
    except BaseException:
        _forget(db, portal, draft, result.added)
        raise
    finally:
        if upload is not None:
            upload.abort()
    for stored in result.added:
        db.add(stored)
    drafts.touch(draft)
    metrics.UPLOAD_BYTES.labels("form").inc(added)
    return result


def _forget(db: Session, portal: Portal, draft: Draft, added: list[StoredFile]) -> None:
    """The files a failed request had finished: neither rows nor blobs stay."""
    for stored in added:
        if stored in draft.files:
            draft.files.remove(stored)
        if stored in db:
            db.expunge(stored)
        forget_blob(portal, stored.blob_key)


def forget_blob(portal: Portal, blob_key: str) -> None:
    """Delete a blob no row names; one the store cannot delete now is swept as an orphan later."""
    try:
        portal.store.delete(blob_key)
    except StorageUnavailable:
        log.warning("blob %s stays until the orphan sweep: the store is unavailable", blob_key)


def disguised(db: Session, draft: Draft, name: str, head: bytes, size: int, ip: str) -> str | None:
    """Why the file that starts with ``head`` is refused ("type_program",
    "type_script" or "type_archive"), with the refusal in the audit trail,
    when it is one of these and its name hides it (app/true_types.py). The
    trail keeps the extension and what the content is, never the name."""
    kind = true_types.disguise(name, head)
    if kind is None:
        return None
    audit.record(
        db, "file_type_mismatch", transfer_id=draft.transfer_id, actor=draft.sender_email, ip=ip, size=size,
        extension=true_types.extension(name), content=kind,
    )
    return f"type_{kind}"


@dataclass(frozen=True)
class Screening:
    """What ``screen`` decided: the mark of a file let in (``StoredFile.scanned``), or the verdict that keeps it out."""

    mark: str = ""
    refusal: scanning.Verdict | None = None


def screen(
    db: Session, portal: Portal, draft: Draft, blob_key: str, size: int, file_id: str, limits: Limits, ip: str,
    scanner: scanning.Clamd | None = None,
) -> Screening:
    """Whether the stored file may join the draft, and marked how.

    Where ``limits.scan`` requires it, the blob is decrypted under the
    draft's key segment by segment and streamed to the scanner, so neither
    the plaintext nor more than a segment of it is ever kept. A file the
    scanner could not judge is let in only with ``scan.on_unavailable =
    "accept"``. Every verdict and every file let in unscanned goes to the
    audit trail (sizes and signatures, never names or contents). A request
    with several files passes each the same ``scanner``.
    """
    if limits.scan != "required":
        return Screening(scanning.NOT_REQUIRED)
    config = portal.settings.scan
    if size > config.max_stream_bytes:
        # Let in under rules without a scan: clamd would not read it all.
        verdict = scanning.Verdict(scanning.TOO_LARGE)
    else:
        with portal.store.open(blob_key) as fh:
            reader = SegmentReader(
                fh, drafts.data_key(draft), portal.store.size(blob_key), transfer_id=draft.transfer_id, file_id=file_id
            )
            verdict = (scanner or scanning.Clamd(config)).scan(reader.iter_range())
    metrics.SCANS.labels("failed" if verdict.result == scanning.UNAVAILABLE else verdict.result).inc()
    event = {"transfer_id": draft.transfer_id, "actor": draft.sender_email, "ip": ip, "size": size}
    if verdict.result == scanning.CLEAN:
        # Every verdict is on the record, so the trail shows each file that went out was scanned.
        audit.record(db, "file_scanned", **event)
        return Screening(scanning.CLEAN)
    if verdict.result == scanning.INFECTED:
        audit.record(db, "file_infected", signature=verdict.detail, **event)
        return Screening(refusal=verdict)
    # Too large for clamd, partly past its limits, or too slow to scan: never
    # let in unscanned, whatever on_unavailable (which is about outages) says.
    accepted = verdict.result == scanning.UNAVAILABLE and not verdict.slow and config.on_unavailable == "accept"
    if verdict.result == scanning.UNAVAILABLE:
        log.warning("no malware scan (scan.clamd_address): %s; the file is %s", verdict.detail,
                    "accepted unscanned (scan.on_unavailable)" if accepted else "refused")
    limit = {"limit": verdict.detail} if verdict.result == scanning.INCOMPLETE else {}
    audit.record(db, "file_unscanned", reason=verdict.result, accepted=accepted, **limit, **event)
    return Screening(scanning.UNSCANNED) if accepted else Screening(refusal=verdict)


def screen_or_forget(
    db: Session, portal: Portal, draft: Draft, blob_key: str, size: int, file_id: str, limits: Limits, ip: str,
    scanner: scanning.Clamd,
) -> Screening:
    """``screen``, with the blob deleted unless the file may join the draft."""
    try:
        screening = screen(db, portal, draft, blob_key, size, file_id, limits, ip, scanner)
    except BaseException:
        forget_blob(portal, blob_key)
        raise
    if screening.refusal is not None:
        forget_blob(portal, blob_key)
    return screening


def admitted(portal: Portal, limits: Limits, scanned: str) -> bool:
    """Whether a file marked ``scanned`` (``StoredFile.scanned``) may go out under ``limits``."""
    if limits.scan != "required" or scanned == scanning.CLEAN:
        return True
    return scanned == scanning.UNSCANNED and portal.settings.scan.on_unavailable == "accept"


def screen_files(db: Session, portal: Portal, draft: Draft, limits: Limits, ip: str) -> Received:
    """The draft's files that ``limits`` do not admit as they were let in, scanned now; what keeps any out.

    A file comes in under the rules of the recipients named at the time.
    When the recipients change to some whose rule requires a scan, the files
    let in unscanned are scanned here, as the sender leaves the files step
    ("Next" waits for the verdicts); ``transactions.files_problems`` keeps
    the transfer from starting until then. A file found infected (in
    ``infected``), too large to scan (refused "unscannable_removed") or
    not checked completely (refused "incomplete_removed") is
    removed; one the scanner cannot judge now stays as it was (refused
    "unchecked"), unless ``scan.on_unavailable = "accept"`` lets it in
    marked unscanned. One let in so before stays so, as the audit trail
    recorded it.

    Commits before each scan, so that no database lock waits on the
    scanner, and after the verdicts, which the refusal that follows must
    not undo. A file the sender removes (in another tab) while this runs
    stays removed, and is passed over.
    """
    result = Received()
    dek = drafts.data_key(draft)
    scanner = scanning.Clamd(portal.settings.scan)
    waiting = [f for f in draft.files if not admitted(portal, limits, f.scanned)]
    for stored in waiting:
        if not still_there(db, stored):
            continue
        db.commit()
        try:
            screening = screen(db, portal, draft, stored.blob_key, stored.size, stored.id, limits, ip, scanner)
        except Exception:
            db.rollback()
            if still_there(db, stored):
                raise
            continue  # its blob went with it, while it was read
        # Locked until the verdict is committed, so that a removal now waits for it.
        if not still_there(db, stored, lock=True):
            continue
        if (refusal := screening.refusal) is None:
            stored.scanned = screening.mark
            continue
        name = open_text(dek, "name", stored.id, stored.name_ct)
        if refusal.result == scanning.UNAVAILABLE:
            result.refused.append((name, "unchecked"))
            continue
        draft.files.remove(stored)
        db.delete(stored)
        dbmod.after_commit(db, lambda key=stored.blob_key: forget_blob(portal, key))
        if refusal.result == scanning.INFECTED:
            result.infected.append((name, refusal.detail))
        else:
            result.refused.append((name, refusal_reason(refusal) + "_removed"))
    if waiting:
        db.commit()
        # Reloaded when next used: files removed meanwhile are no longer in it.
        db.expire(draft, ["files"])
    return result


def still_there(db: Session, row: StoredFile | Upload, lock: bool = False) -> bool:
    """Whether the file (or upload) is still in the database, which a removal in another request may have changed."""
    model = type(row)
    query = select(model.id).where(model.id == row.id)
    return db.scalar(query.with_for_update() if lock else query) is not None


def refusal_reason(refusal: scanning.Verdict) -> str:
    """A refusal other than a detection, as ``Received.refused`` names it."""
    if refusal.result == scanning.INCOMPLETE and refusal.detail.startswith(scanning.ENCRYPTED):
        return "encrypted"
    return {scanning.UNAVAILABLE: "scanner", scanning.INCOMPLETE: "incomplete"}.get(refusal.result, "unscannable")


class OpenUpload:
    """One file being written: ciphertext only, visible only once complete."""

    def __init__(self, portal: Portal, dek: bytes, name: str, transfer_id: str) -> None:
        self.id = str(uuid.uuid4())
        self.name = name
        self.dek = dek
        self.blob_key = portal.store.new_key()
        self._ctx = portal.store.create(self.blob_key)
        self._sink = self._ctx.__enter__()
        self._writer = SegmentWriter(self._sink, dek, transfer_id=transfer_id, file_id=self.id)
        # The first bytes, for the true type check; in memory only, like the segment being sealed.
        self.head = bytearray()

    @property
    def size(self) -> int:
        return self._writer.size

    def write(self, data: bytes) -> None:
        if len(self.head) < true_types.HEAD_BYTES:
            self.head += data[: true_types.HEAD_BYTES - len(self.head)]
        self._writer.write(data)

    def close(self) -> None:
        """The blob complete under its key, not yet a file of the draft."""
        self._writer.close()
        self._ctx.__exit__(None, None, None)

    def finish(self, draft: Draft, position: int, scanned: str) -> StoredFile:
        self.close()
        return self.stored(draft, position, scanned)

    def stored(self, draft: Draft, position: int, scanned: str) -> StoredFile:
        """The closed blob's row, a file of ``draft`` from now on, marked as ``screen`` let it in."""
        name_ct, type_ct = sealed_name_and_type(self.dek, self.id, self.name)
        return StoredFile(
            id=self.id, draft=draft, position=position, blob_key=self.blob_key, size=self._writer.size,
            name_ct=name_ct, type_ct=type_ct, scanned=scanned,
        )

    def abort(self) -> None:
        # Throwing into the store's context deletes the partial blob.
        err = RuntimeError("upload aborted")
        self._ctx.__exit__(RuntimeError, err, None)

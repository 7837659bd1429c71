"""Blobs in an S3-compatible object store (Ceph RGW, MinIO, SeaweedFS, AWS S3).

Only ciphertext ever leaves the app, and memory stays bounded by one part:

- **Written in one go** (form uploads): the sealed bytes fill a part buffer;
  each full buffer becomes a part of a multipart upload, and a blob that
  fits in one part is a single PUT. An exception aborts the multipart
  upload, so nothing half-written becomes visible.
- **Read** through ``RangedReader``: ranged GETs behind a seekable file, so
  the segment reader, Range requests, previews and the streamed ZIP work as
  on a local file. One response body stays open while reads follow each
  other; a seek elsewhere opens another at the new place.
- **Resumable (tus) uploads** keep all their state in the database (the
  upload row and its ``upload_part`` rows), so an upload begun through one
  app server goes on through any other; see ``_Pending`` for the rule that
  keeps a nonce from ever being used twice.

Object names are the blob keys, behind ``storage.s3_prefix``; an unfinished
resumable upload adds ``<key>.tail-<random>`` objects (see ``_Pending``).
"""

from __future__ import annotations

import hashlib
import io
import logging
import mmap
import re
import secrets
from collections.abc import Callable, Container, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ConnectTimeoutError, EndpointConnectionError, NoCredentialsError
from sqlalchemy import delete, or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from . import db as dbmod
from .clock import utcnow
from .crypto.stream import HEADER_BYTES, SEGMENT_SIZE, TAG_BYTES, new_header, parse_header
from .models import Upload, UploadPart
from .settings import Storage
from .storage import StorageUnavailable, UploadBusy, UploadGone, UploadRestarted, new_key

log = logging.getLogger(__name__)

MiB = 1024 * 1024
# Parts of at least 8 MiB (S3 wants 5 MiB for all but the last), boto3's
# own size. A resumable upload's parts are a whole number of segments: 128
# of them are 8 MiB of plaintext, the chunk the files page sends, so its
# chunks fill parts exactly and leave no tail.
PART_BYTES = 8 * MiB
MAX_PARTS = 10_000
# Parts of a blob written in one go, whose size is unknown, double every
# this many parts: 10,000 of them reach beyond S3's 5 TB per object.
PARTS_PER_SIZE = 1000
# How long a request holds a resumable upload without renewing, and how
# often it renews while it writes.
LEASE = timedelta(seconds=30)
RENEW = timedelta(seconds=10)
DIGEST_BYTES = 32
# Written and deleted by the readiness check; not named like a blob, so the sweep never counts it.
PROBE = "readiness-probe"
_OURS = re.compile(r"[0-9a-f]{32}(\.tail-[0-9a-f]{16})?")


class _NoSuchUpload(Exception):
    """The multipart upload was completed or aborted meanwhile."""


class _PastTheEnd(Exception):
    """A range that starts at or beyond the end of the object."""


def part_segments(length: int, segment_size: int = SEGMENT_SIZE) -> int:
    """Segments per part of a resumable upload: so that 10,000 parts hold ``length``."""
    unit = -(-PART_BYTES // segment_size)
    segments = max(1, -(-length // segment_size))
    return unit * -(-segments // (unit * MAX_PARTS))


class S3BlobStore:
    def __init__(self, settings: Storage) -> None:
        self.bucket = settings.s3_bucket
        self.prefix = settings.s3_prefix
        credentials = (
            {"aws_access_key_id": settings.s3_access_key_id, "aws_secret_access_key": settings.s3_secret_access_key}
            if settings.s3_access_key_id else {}
        )
        self._client = boto3.session.Session().client(
            "s3", endpoint_url=settings.s3_endpoint_url or None, region_name=settings.s3_region or None,
            config=Config(
                s3={"addressing_style": settings.s3_addressing_style},
                # An unreachable store is said so within seconds, not minutes.
                connect_timeout=5, read_timeout=60, retries={"mode": "standard", "max_attempts": 3},
                # One connection per running upload or download: gunicorn's threads.
                max_pool_connections=64,
                # Every segment's AEAD tag is checked as it is read: a checksum
                # of each answer as well would be one more pass over it.
                response_checksum_validation="when_required",
                # Over plain http the body's SHA-256 is signed with each
                # request, for the store to check; a CRC32 on top would be a
                # second pass over every part. Over https botocore sends the
                # CRC32 instead of signing the body, which stays the cheaper.
                request_checksum_calculation=(
                    "when_required" if settings.s3_endpoint_url.startswith("http://") else "when_supported"
                ),
            ),
            **credentials,
        )

    new_key = staticmethod(new_key)

    def _name(self, key: str) -> str:
        return self.prefix + key

    def _call(self, operation: str, **params: Any) -> Any:
        """One request to the store; its failures as FileNotFoundError, _NoSuchUpload or StorageUnavailable."""
        try:
            return getattr(self._client, operation)(Bucket=self.bucket, **params)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = error.get("Code", "")
            if code in ("NoSuchKey", "404", "NotFound"):
                raise FileNotFoundError(params.get("Key", "")) from None
            if code == "NoSuchUpload":
                raise _NoSuchUpload(params.get("Key", "")) from None
            if code == "InvalidRange":
                raise _PastTheEnd(params.get("Key", "")) from None
            raise StorageUnavailable(f"S3 {operation}: {code} {error.get('Message', '')}") from exc
        except BotoCoreError as exc:
            raise StorageUnavailable(f"S3 {operation}: {exc}") from exc

    def check(self) -> None:
        """A probe object is put and deleted, which is what an upload needs:
        the bucket there, the credentials valid and allowed to write (a key
        that may only read and list fails here)."""
        probe = self._name(PROBE)
        self._checked("list", lambda: self._client.list_objects_v2(Bucket=self.bucket, Prefix=self.prefix, MaxKeys=1))
        self._checked("write to", lambda: self._client.put_object(Bucket=self.bucket, Key=probe, Body=b""))
        self._checked("delete from", lambda: self._client.delete_object(Bucket=self.bucket, Key=probe))

    def _checked(self, verb: str, request: Callable[[], object]) -> None:
        endpoint = self._client.meta.endpoint_url
        try:
            request()
        except NoCredentialsError:
            raise StorageUnavailable(
                "storage.s3_access_key_id: no credentials; set s3_access_key_id and s3_secret_access_key, "
                "or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            ) from None
        except (EndpointConnectionError, ConnectTimeoutError) as exc:
            raise StorageUnavailable(f"storage.s3_endpoint_url: cannot reach {endpoint} ({exc})") from None
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = error.get("Code", "")
            setting, what = {
                "NoSuchBucket": ("s3_bucket", f"{endpoint} has no bucket {self.bucket!r}"),
                "InvalidBucketName": ("s3_bucket", f"{endpoint} does not accept the bucket name {self.bucket!r}"),
                "InvalidAccessKeyId": ("s3_access_key_id", f"{endpoint} does not know this access key"),
                "SignatureDoesNotMatch": ("s3_secret_access_key", f"{endpoint} refused the secret access key"),
                "AccessDenied": ("s3_access_key_id", f"these credentials may not {verb} bucket {self.bucket!r}"),
                "AuthorizationHeaderMalformed": ("s3_region", f"{endpoint} expects another region"),
                "PermanentRedirect": ("s3_region", f"bucket {self.bucket!r} lives in another region"),
            }.get(code, ("s3_endpoint_url", f"{endpoint} answered"))
            raise StorageUnavailable(f"storage.{setting}: {what} ({code}: {error.get('Message', '')})") from None
        except BotoCoreError as exc:
            raise StorageUnavailable(f"storage.s3_endpoint_url: {endpoint}: {exc}") from None

    def free_bytes(self) -> None:
        """An object store has no disk to measure: the free-space watermark does not apply."""
        return None

    @contextmanager
    def create(self, key: str) -> Iterator[_ObjectWriter]:
        writer = _ObjectWriter(self, self._name(key))
        try:
            yield writer
            writer.close()
        except BaseException:
            writer.abort()
            raise

    def open(self, key: str) -> RangedReader:
        return RangedReader(self, self._name(key))

    def size(self, key: str) -> int:
        return int(self._call("head_object", Key=self._name(key))["ContentLength"])

    def delete(self, key: str) -> None:
        name = self._name(key)
        self._call("delete_object", Key=name)
        for obj in self._listed("list_objects_v2", "Contents", Prefix=name + "."):
            self._call("delete_object", Key=obj["Key"])
        for upload in self._listed("list_multipart_uploads", "Uploads", Prefix=name):
            if upload["Key"] == name:
                self._abort(name, upload["UploadId"])

    def sweep(self, known: Container[str], cutoff: datetime) -> int:
        removed = 0
        for obj in self._listed("list_objects_v2", "Contents", Prefix=self.prefix):
            key = obj["Key"][len(self.prefix):]
            if _OURS.fullmatch(key) and key not in known and obj["LastModified"] < cutoff:
                self._call("delete_object", Key=obj["Key"])
                removed += 1
        for upload in self._listed("list_multipart_uploads", "Uploads", Prefix=self.prefix):
            key = upload["Key"][len(self.prefix):]
            if _OURS.fullmatch(key) and upload["UploadId"] not in known and upload["Initiated"] < cutoff:
                self._abort(upload["Key"], upload["UploadId"])
                removed += 1
        return removed

    def _listed(self, operation: str, field: str, **params: Any) -> Iterator[dict[str, Any]]:
        try:
            for page in self._client.get_paginator(operation).paginate(Bucket=self.bucket, **params):
                yield from page.get(field, [])
        except (ClientError, BotoCoreError) as exc:
            raise StorageUnavailable(f"S3 {operation}: {exc}") from exc

    def _abort(self, name: str, upload_id: str) -> None:
        try:
            self._call("abort_multipart_upload", Key=name, UploadId=upload_id)
        except _NoSuchUpload:
            pass  # gone already

    def _quietly(self, action: Callable[[], object]) -> None:
        """Clean-up that may fail: what it leaves is swept as an orphan later."""
        try:
            action()
        except StorageUnavailable:
            log.warning("S3 clean-up failed; the orphan sweep will finish it", exc_info=True)

    def begin(self, upload: Upload) -> None:
        upload.header = new_header()
        upload.part_segments = part_segments(upload.length)

    @contextmanager
    def resume(self, db: Session, upload: Upload, commit: Callable[..., None]) -> Iterator[_Pending]:
        """The upload, held for this request by a lease on its row: one
        conditional UPDATE takes it (free, or expired because its holder died),
        every commit of the request renews it, and the request gives it back
        at the end. A second request meanwhile gets UploadBusy."""
        holder = secrets.token_hex(16)
        now = utcnow()
        taken = db.execute(
            update(Upload)
            .where(Upload.id == upload.id, or_(Upload.busy_until.is_(None), Upload.busy_until <= now))
            .values(busy_by=holder, busy_until=now + LEASE)
            .execution_options(synchronize_session=False)
        ).rowcount
        db.commit()
        if not taken:
            raise UploadBusy(upload.id)
        pending: _Pending | None = None
        try:
            db.refresh(upload)
            pending = _Pending(self, db, upload, commit, holder)
            yield pending
        finally:
            if pending is not None:
                pending.close()
            try:
                db.execute(
                    update(Upload).where(Upload.id == upload.id, Upload.busy_by == holder)
                    .values(busy_by=None, busy_until=None).execution_options(synchronize_session=False)
                )
                db.commit()
            except SQLAlchemyError:
                db.rollback()
                log.warning("releasing the lease of upload %s failed; it expires on its own", upload.id, exc_info=True)


class PartBuffer:
    """The bytes of one part, in memory mapped for this upload alone and
    reused by each of its parts. Unmapped when the upload's request ends, it
    goes back to the system at once; from the heap, a buffer of several
    megabytes per request could stay with the allocator of every thread
    that ever served one."""

    def __init__(self, capacity: int) -> None:
        self._data = mmap.mmap(-1, capacity)
        self.size = 0

    @property
    def capacity(self) -> int:
        return len(self._data)

    def append(self, data: bytes | bytearray | memoryview) -> None:
        end = self.size + len(data)
        if end > len(self._data):
            # Mapped anew: a body still held somewhere may be looking at the old one.
            grown = mmap.mmap(-1, max(end, 2 * len(self._data)))
            grown[: self.size] = self._data[: self.size]
            self._data = grown
        self._data[self.size : end] = data
        self.size = end

    def fill(self, source: io.RawIOBase) -> None:
        """Everything ``source`` holds, read straight into the buffer."""
        with memoryview(self._data) as view:
            while count := source.readinto(view[self.size : self.size + MiB]):
                self.size += count

    def view(self) -> memoryview:
        return memoryview(self._data)[: self.size]

    def body(self, size: int | None = None) -> _Body:
        """The first ``size`` bytes (default: all filled), as the request body of a PUT."""
        return _Body(self.view()[:size])

    def clear(self) -> None:
        self.size = 0


class _Seekable(io.RawIOBase):
    """A readable raw file that reads from wherever ``seek`` put it."""

    def __init__(self) -> None:
        super().__init__()
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_CUR:
            offset += self._pos
        elif whence == io.SEEK_END:
            offset += self._length()
        self._pos = offset
        return offset

    def _length(self) -> int:
        raise io.UnsupportedOperation("seek from the end")


class _Body(_Seekable):
    """A seekable file over a buffer, read without copying it whole (botocore
    rewinds a body to retry)."""

    def __init__(self, view: memoryview) -> None:
        super().__init__()
        self._view = view

    def _length(self) -> int:
        return len(self._view)

    def readinto(self, buffer: Any) -> int:
        count = max(0, min(len(buffer), len(self._view) - self._pos))
        buffer[:count] = self._view[self._pos : self._pos + count]
        self._pos += count
        return count


class _ObjectWriter:
    """A blob written in one go: a single PUT if it fits in one part, else a
    multipart upload whose parts go out as the buffer fills."""

    def __init__(self, store: S3BlobStore, name: str) -> None:
        self._store, self._name = store, name
        self._buffer = PartBuffer(PART_BYTES + SEGMENT_SIZE + TAG_BYTES)
        self._parts: list[dict[str, Any]] = []
        self._upload_id: str | None = None

    def write(self, data: bytes) -> int:
        self._buffer.append(data)
        if self._buffer.size >= PART_BYTES << (len(self._parts) // PARTS_PER_SIZE):
            self._send_part()
        return len(data)

    def _send_part(self) -> None:
        if self._upload_id is None:
            self._upload_id = self._store._call("create_multipart_upload", Key=self._name)["UploadId"]
        number = len(self._parts) + 1
        answer = self._multipart("upload_part", PartNumber=number, Body=self._buffer.body())
        self._parts.append({"PartNumber": number, "ETag": answer["ETag"]})
        self._buffer.clear()

    def _multipart(self, operation: str, **params: Any) -> Any:
        try:
            return self._store._call(operation, Key=self._name, UploadId=self._upload_id, **params)
        except _NoSuchUpload:
            # Aborted meanwhile (a lifecycle rule): what was sent is gone, the sender sends again.
            raise StorageUnavailable(f"S3 {operation}: the multipart upload of {self._name} was aborted") from None

    def close(self) -> None:
        if self._upload_id is None:
            self._store._call("put_object", Key=self._name, Body=self._buffer.body())
            return
        if self._buffer.size:
            self._send_part()
        self._multipart("complete_multipart_upload", MultipartUpload={"Parts": self._parts})

    def abort(self) -> None:
        if self._upload_id is not None:
            self._store._quietly(lambda: self._store._abort(self._name, self._upload_id or ""))


class RangedReader(_Seekable):
    """A blob read by ranged GETs, as a seekable file."""

    def __init__(self, store: S3BlobStore, name: str) -> None:
        super().__init__()
        self._store, self._name = store, name
        self._body: Any = None
        self._body_pos = 0

    def read(self, size: int | None = -1) -> bytes:
        """``size`` bytes (all the rest when negative), fewer only at the end."""
        if self._body is not None and self._body_pos != self._pos:
            self._drop()
        if self._body is None:
            try:
                answer = self._store._call("get_object", Key=self._name, Range=f"bytes={self._pos}-")
            except _PastTheEnd:
                return b""
            self._body, self._body_pos = answer["Body"], self._pos
        chunks, want = [], size if size is not None and size >= 0 else None
        while want is None or want > 0:
            try:
                chunk = self._body.read(want)
            except BotoCoreError as exc:
                raise StorageUnavailable(f"S3 get_object: {exc}") from exc
            if not chunk:
                break
            chunks.append(chunk)
            if want is not None:
                want -= len(chunk)
        data = b"".join(chunks)
        self._pos += len(data)
        self._body_pos = self._pos
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def _drop(self) -> None:
        if self._body is not None:
            self._body.close()
            self._body = None

    def close(self) -> None:
        self._drop()
        super().close()


class _Pending:
    """A resumable upload's bytes in S3, for the one request holding its lease.

    Sealed segments gather in a part buffer. A full buffer (``part_segments``
    segments; part 1 begins with the header) becomes the next part of the
    upload's multipart upload, sent by a thread of the request's own while
    the request reads the next part into a second buffer (a single stream
    to S3 is about as fast as reading and sealing, so the two overlap
    rather than take turns); when the request ends short of a part, the
    buffer is stored as a small "tail" object under a new name, which the
    next request reads back into its buffer, so clients that send small
    chunks progress too. The offset is committed only once what it covers
    is in S3, and an old tail is deleted only after the commit that forgets
    it. Once complete, the last part goes up and the multipart upload is
    completed; a blob that never filled a part is a single PUT.

    **Nonces.** Sealed bytes leave memory only by ``upload_part`` or a PUT.
    Before any of them goes, the SHA-256 of every segment past the offset
    that it carries is committed (``in_flight``). A request that dies
    after sending but before its next commit leaves those digests; the next
    request seals the same indices again from the bytes its client sends
    once more, and may send them only if their digests are the ones
    committed: the same plaintext under the same key, nonce and associated
    data gives the same ciphertext, so nothing new is revealed. A segment
    that differs means another plaintext for a nonce that may have been
    seen: the upload starts over under a fresh header (a new file key), its
    multipart upload aborted. So a killed node costs an upload no more than
    what it had not committed.
    """

    def __init__(
        self, store: S3BlobStore, db: Session, upload: Upload, commit: Callable[..., None], holder: str
    ) -> None:
        self._store, self._db, self._upload, self._commit, self._holder = store, db, upload, commit, holder
        assert upload.header is not None and upload.part_segments is not None
        self.header = upload.header
        segment_size = parse_header(upload.header).segment_size
        self._segment_size, self._stride = segment_size, segment_size + TAG_BYTES
        self._per_part = upload.part_segments
        self._last_index = -(-upload.length // segment_size) - 1
        self._parts = list(db.scalars(select(UploadPart).where(UploadPart.upload_id == upload.id).order_by(UploadPart.number)))
        # Segments committed, and the first one in the buffer (the part being filled).
        self._stored = upload.offset // segment_size
        self._first = len(self._parts) * self._per_part
        self.offset = upload.offset
        self._buffer = PartBuffer(HEADER_BYTES + self._per_part * self._stride)
        # While one part is on its way to S3 the next fills a second buffer.
        self._spare: PartBuffer | None = None
        self._sender: ThreadPoolExecutor | None = None
        self._sending: tuple[int, int, PartBuffer, Future[str]] | None = None
        if upload.tail_key is None:
            self._buffer.append(self._head())
        else:
            try:
                with store.open(upload.tail_key) as tail:
                    self._buffer.fill(tail)
            except FileNotFoundError:
                raise UploadGone(upload.id) from None
        if self._buffer.size != self._until(self._stored):
            raise UploadGone(upload.id)
        self._renewed = utcnow()
        self._stopped = False

    def _head(self) -> bytes:
        return self.header if self._first == 0 else b""

    def _until(self, end: int) -> int:
        """Where segment ``end`` starts in the buffer. (After a failed send
        the buffer may hold a segment the offset does not cover.)"""
        return len(self._head()) + (end - self._first) * self._stride

    def put(self, index: int, sealed: bytes) -> None:
        self._buffer.append(sealed)
        if self._sending is not None and self._sending[3].done():
            # Its offset counts as soon as S3 has it (this commit renews the lease too).
            self._settle()
        elif utcnow() - self._renewed > RENEW:
            self._keep()
        if (index + 1) % self._per_part == 0 and index != self._last_index:
            self._send_part(index + 1)

    def save(self, offset: int, complete: bool) -> None:
        if self._stopped:
            return
        self._settle()
        if complete:
            self._publish()
            return
        end = offset // self._segment_size
        if end > self._stored:
            tail = f"{self._upload.blob_key}.tail-{secrets.token_hex(8)}"
            self._mark(end)
            self._store._call("put_object", Key=self._store._name(tail), Body=self._buffer.body(self._until(end)))
            self._advance(end, tail)

    def _send_part(self, end: int) -> None:
        """Send the full buffer as the next part, in the background: the
        request reads on into the spare buffer meanwhile."""
        if self._upload.multipart_id is None:
            self._upload.multipart_id = self._store._call("create_multipart_upload", Key=self._name())["UploadId"]
        self._settle()
        self._mark(end)
        try:
            self._hand_off(end)
        except BaseException:
            # Handed off or not, this request commits nothing more: the next
            # one goes on from the committed offset, with these digests.
            self._stopped = True
            raise

    def _hand_off(self, end: int) -> None:
        number = self._first // self._per_part + 1
        full = self._buffer
        send = self._part(number, full)
        sending: Future[str]
        try:
            if self._sender is None:
                self._sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="s3-part")
            sending = self._sender.submit(send)
        except RuntimeError:
            # No thread to be had (a worker shutting down after a reload, a
            # process limit): sent here, in turn, as before there was one.
            sending = Future()
            try:
                sending.set_result(send())
            except Exception as exc:  # noqa: BLE001  (raised where the part is settled)
                sending.set_exception(exc)
        self._sending = (number, end, full, sending)
        self._first = end
        self._buffer = self._spare or PartBuffer(full.capacity)
        self._spare = None

    def _settle(self) -> None:
        """Wait for the part on its way; once S3 has it, commit it and the offset it brings."""
        if self._sending is None:
            return
        number, end, buffer, sent = self._sending
        self._sending = None
        try:
            etag = sent.result()
        except _NoSuchUpload:
            raise self._restart() from None
        except BaseException:
            # The committed offset, tail and digests still hold: the next request goes on from there.
            self._stopped = True
            raise
        part = UploadPart(upload_id=self._upload.id, number=number, etag=etag)
        self._db.add(part)
        self._parts.append(part)
        self._advance(end, None)
        buffer.clear()
        self._spare = buffer

    def close(self) -> None:
        """No part of this request's may still be on its way once the lease is given back."""
        if self._sender is not None:
            self._sender.shutdown(wait=True)

    def _publish(self) -> None:
        self._mark(self._last_index + 1)
        tail, multipart_id = self._upload.tail_key, None
        if not self._parts:
            self._store._call("put_object", Key=self._name(), Body=self._buffer.body())
            # Begun by a request whose first part never got committed.
            multipart_id = self._upload.multipart_id
        else:
            number = self._first // self._per_part + 1
            parts = [{"PartNumber": p.number, "ETag": p.etag} for p in self._parts]
            try:
                parts.append({"PartNumber": number, "ETag": self._part(number, self._buffer)()})
            except _NoSuchUpload:
                raise self._restart() from None
            try:
                self._store._call(
                    "complete_multipart_upload", Key=self._name(), UploadId=self._upload.multipart_id,
                    MultipartUpload={"Parts": parts},
                )
            except _NoSuchUpload:
                raise self._restart() from None
        # Once the row that names them is gone (the caller's commit).
        dbmod.after_commit(self._db, lambda: self._clean_up(tail, multipart_id))

    def _part(self, number: int, buffer: PartBuffer) -> Callable[[], str]:
        """The upload of ``buffer`` as part ``number``, to run here or in the
        sender thread: it touches no session. _NoSuchUpload when the multipart
        upload was completed by a request that died before its commit, or aborted."""
        name, upload_id = self._name(), self._upload.multipart_id

        def send() -> str:
            answer = self._store._call("upload_part", Key=name, UploadId=upload_id, PartNumber=number, Body=buffer.body())
            return str(answer["ETag"])

        return send

    def _mark(self, end: int) -> None:
        """Commit the digests of segments ``self._stored`` to ``end`` before they leave memory."""
        digests = bytearray()
        with self._buffer.view() as buffer:
            at = self._until(self._stored)
            for _ in range(self._stored, end):
                digests += hashlib.sha256(buffer[at : at + self._stride]).digest()
                at += self._stride
        known = self._upload.in_flight or b""
        overlap = min(len(digests), len(known))
        if digests[:overlap] != known[:overlap]:
            raise self._restart()
        self._upload.in_flight = bytes(digests) + known[len(digests):]
        self._keep()

    def _advance(self, end: int, tail: str | None) -> None:
        """Segments up to ``end`` are in S3: commit the offset, then forget the old tail."""
        old_tail = self._upload.tail_key
        self._upload.tail_key = tail
        self._upload.in_flight = (self._upload.in_flight or b"")[(end - self._stored) * DIGEST_BYTES:] or None
        self.offset = self._upload.offset = end * self._segment_size
        self._stored = end
        self._keep()
        self._clean_up(old_tail, None)

    def _restart(self) -> UploadRestarted:
        """Start over at offset 0 under a fresh header; returns the exception to raise."""
        tail, multipart_id = self._upload.tail_key, self._upload.multipart_id
        upload = self._upload
        upload.header = new_header(self._segment_size)
        upload.multipart_id = upload.tail_key = upload.in_flight = None
        upload.offset = 0
        self._db.execute(delete(UploadPart).where(UploadPart.upload_id == upload.id))
        self._keep()
        self._stopped = True
        self._clean_up(tail, multipart_id)
        return UploadRestarted(upload.id)

    def _keep(self) -> None:
        """Commit, if this request still holds the lease (which this renews)."""
        now = utcnow()
        held = self._db.execute(
            update(Upload).where(Upload.id == self._upload.id, Upload.busy_by == self._holder)
            .values(busy_until=now + LEASE).execution_options(synchronize_session=False)
        ).rowcount
        if not held:
            # Another request took the upload over: none of this may be committed.
            self._db.rollback()
            self._stopped = True
            raise UploadBusy(self._upload.id)
        try:
            self._commit()
        except BaseException:
            # Whether it reached the database is unknown: nothing more from this request.
            self._stopped = True
            raise
        self._renewed = now

    def _clean_up(self, tail: str | None, multipart_id: str | None) -> None:
        """A tail and a multipart upload that no committed row names any more."""
        if tail is not None:
            self._store._quietly(lambda: self._store._call("delete_object", Key=self._store._name(tail)))
        if multipart_id is not None:
            self._store._quietly(lambda: self._store._abort(self._name(), multipart_id))

    def _name(self) -> str:
        return self._store._name(self._upload.blob_key)

"""Blob storage for ciphertext: a folder on local disk, or an S3 bucket
(``app/s3_store.py``). Only ever sees encrypted bytes.

Keys are random and never derived from a file name, so nothing a user types
can reach the file system or an object name. A blob becomes visible under
its key only when it was written completely (local: written to a temporary
name, then renamed; S3: a multipart upload is invisible until completed),
so a crashed upload never leaves a half blob that looks whole.

Services see a store only through ``BlobStore``; ``make_store`` builds the
one the configuration names.
"""

from __future__ import annotations

import errno
import fcntl
import os
import secrets
import shutil
import threading
from collections.abc import Callable, Container, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager, ExitStack, contextmanager
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Protocol

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from . import private_files, writeback
from .crypto.stream import HEADER_BYTES, SEGMENT_SIZE, TAG_BYTES, new_header, parse_header
from .models import Upload
from .reusable_buffers import BufferPool
from .settings import ConfigError, Storage

# Segment indices a local upload reserves with one commit: 64 MiB at the
# default segment size, so commits stay rare next to the bytes.
RESERVE_SEGMENTS = 1024
# What a local blob's writer gathers before it writes: sixteen segments.
WRITE_BATCH_BYTES = 1024 * 1024
# Writes in flight at once in a process, one per upload at most; more
# uploads than this wait their turn, as they would for the disk anyway.
WRITER_THREADS = 4
# The upload's row as it is now (``Session.refresh``), at every chunk: built once, with its cache key.
_UPLOAD_NOW = select(Upload).where(Upload.id == bindparam("upload_id")).execution_options(populate_existing=True)


class StorageUnavailable(Exception):
    """The store cannot be reached, or refused what it should have done; trying
    again later may work. From ``check``, the message names the setting to fix."""


class UploadBusy(Exception):
    """Another request is writing this resumable upload right now."""


class UploadGone(Exception):
    """The resumable upload's stored bytes are lost; the client must start again."""


class UploadRestarted(Exception):
    """The resumable upload started over at offset 0 under a fresh header,
    because bytes were sealed beyond its offset that it cannot vouch for
    (docs/FORMAT.md, "Resumable uploads")."""


class Sink(Protocol):
    def write(self, data: bytes, /) -> object: ...


class PendingBlob(Protocol):
    """One request's exclusive hold on a resumable upload's stored bytes."""

    # The header the segments are sealed under, and the plaintext offset the
    # stored bytes reach (a whole number of segments).
    header: bytes
    offset: int

    def put(self, index: int, sealed: bytes) -> None:
        """Sealed segment ``index`` (the next one), to be stored."""

    def save(self, offset: int, complete: bool) -> None:
        """The request ends with the segments put so far. Makes them durable
        and commits ``offset``; once ``complete``, publishes the blob under
        its key instead, which the caller's commit then records."""


class BlobStore(Protocol):
    def new_key(self) -> str: ...

    def check(self) -> None:
        """Raises StorageUnavailable, naming the setting, unless the store works."""

    def free_bytes(self) -> int | None:
        """Free space where the blobs go, or None where there is no disk to measure."""

    def create(self, key: str) -> AbstractContextManager[Sink]:
        """A blob written in one go; visible under ``key`` only once the block ends without an exception."""

    def open(self, key: str) -> BinaryIO:
        """The blob, readable and seekable; FileNotFoundError if there is none."""

    def size(self, key: str) -> int: ...

    def delete(self, key: str) -> None:
        """The blob and whatever an unfinished upload left under its key."""

    def sweep(self, known: Container[str], cutoff: datetime) -> int:
        """Remove what no row names (``known``: blob keys, tail objects,
        multipart upload ids) and was stored before ``cutoff``; returns how many."""

    def begin(self, upload: Upload) -> None:
        """Prepare a new resumable upload (its row is not committed yet)."""

    def resume(
        self, db: Session, upload: Upload, commit: Callable[..., None]
    ) -> AbstractContextManager[PendingBlob]:
        """The upload's stored bytes, for this request alone: raises
        UploadBusy if another request holds them and UploadGone if they are
        lost. ``commit(**columns)`` writes ``columns`` of the upload's row
        (none: what was changed on ``upload``), stamps its progress and
        commits ``db``."""


def new_key() -> str:
    return secrets.token_hex(16)


def make_store(settings: Storage, instance: Path) -> BlobStore:
    """The store the configuration names; an S3 bucket must answer at once."""
    if settings.backend == "local":
        return LocalBlobStore(instance / settings.blob_dir)
    try:
        from .s3_store import S3BlobStore
    except ModuleNotFoundError as exc:
        raise ConfigError(f"storage.backend: \"s3\" needs {exc.name}: pip install -e '.[s3]'") from None

    store = S3BlobStore(settings)
    try:
        store.check()
    except StorageUnavailable as exc:
        raise ConfigError(str(exc)) from None
    return store


class LocalBlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        private_files.make_dir(root)
        # Blobs an older version wrote readable by others end up in folders
        # that keep others out; no need to visit every blob.
        private_files.tighten(root)
        for folder in root.iterdir():
            private_files.tighten(folder)

    new_key = staticmethod(new_key)

    def _path(self, key: str) -> Path:
        if len(key) != 32 or not all(c in "0123456789abcdef" for c in key):
            raise ValueError("malformed blob key")
        return self.root / key[:2] / key

    def check(self) -> None:
        """A probe file is made and removed, which is what an upload needs: the
        folder there, and writable by the portal's user (a read-only mount,
        a changed owner and a full disk all fail here)."""
        probe = self.root / f".probe-{secrets.token_hex(8)}"
        try:
            try:
                with private_files.create(probe) as fh:
                    fh.write(b"probe")
            finally:
                probe.unlink(missing_ok=True)
        except OSError as exc:
            raise StorageUnavailable(f"storage.blob_dir: cannot write to {self.root}: {exc.strerror or exc}") from exc

    def free_bytes(self) -> int:
        return shutil.disk_usage(self.root).free

    @contextmanager
    def create(self, key: str) -> Iterator[Sink]:
        final = self._shard(key)
        partial = final.with_suffix(".partial")
        try:
            with private_files.create(partial) as fh, _Appender(fh.fileno(), 0) as appender:
                yield appender
                appender.flush()
                os.fsync(fh.fileno())
            os.replace(partial, final)
            # Before the caller commits a row naming the blob.
            private_files.sync_dir(final.parent)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise

    def open(self, key: str) -> BinaryIO:
        return open(self._path(key), "rb")

    def size(self, key: str) -> int:
        return self._path(key).stat().st_size

    def delete(self, key: str) -> None:
        path = self._path(key)
        path.unlink(missing_ok=True)
        path.with_suffix(".partial").unlink(missing_ok=True)

    def sweep(self, known: Container[str], cutoff: datetime) -> int:
        removed = 0
        for path in self.root.glob("*/*"):
            if path.name.removesuffix(".partial") not in known and path.stat().st_mtime < cutoff.timestamp():
                path.unlink(missing_ok=True)
                removed += 1
        return removed

    def begin(self, upload: Upload) -> None:
        final = self._shard(upload.blob_key)
        with private_files.create(final.with_suffix(".partial")) as fh:
            fh.write(new_header())
            fh.flush()
            os.fsync(fh.fileno())
        private_files.sync_dir(final.parent)

    def _shard(self, key: str) -> Path:
        """The blob's path, its folder made (and recorded on disk) if it is the first there."""
        final = self._path(key)
        if not final.parent.is_dir():
            final.parent.mkdir(mode=private_files.DIR_MODE, exist_ok=True)
            private_files.sync_dir(self.root)
        return final

    @contextmanager
    def resume(self, db: Session, upload: Upload, commit: Callable[..., None]) -> Iterator[PendingBlob]:
        """The pending blob ``<key>.partial``, under an exclusive lock that
        goes with the handle or the process, so two requests racing on one
        upload cannot interleave their bytes."""
        partial = self._path(upload.blob_key).with_suffix(".partial")
        try:
            fh = open(partial, "r+b")
        except FileNotFoundError:
            raise UploadGone(upload.id) from None
        with fh:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise UploadBusy(upload.id) from None
            # Read under the lock: the request that held it before may have
            # stored more since this request read the row, or removed it.
            if db.scalar(_UPLOAD_NOW, {"upload_id": upload.id}) is None:
                raise UploadGone(upload.id)
            pending = _LocalPending(fh, partial, upload, commit)
            with pending.appender:
                yield pending


class _LocalPending:
    """Segments appended to the pending file, each index reserved first.

    Written bytes are on disk, so a segment index is never written before
    a commit has raised the row's mark (``reserved_segments``) above it.
    When a request ends, the file is synced and then the offset committed,
    with the mark brought down to the indices used. A mark still ahead of
    the offset means a request died after writing segments nobody
    recorded, or a write failed: what was sealed under the header on disk
    is unknown, so the upload starts over under a fresh header, and with it
    a fresh file key.
    """

    def __init__(self, fh: BinaryIO, path: Path, upload: Upload, commit: Callable[..., None]) -> None:
        self._fh, self._path, self._commit = fh, path, commit
        header = fh.read(HEADER_BYTES)
        segment_size = parse_header(header).segment_size
        stored = upload.offset // segment_size
        if upload.reserved_segments > stored:
            header, stored = new_header(segment_size), 0
            fh.seek(0)
            fh.write(header)
        self.header = header
        # What every commit from here on (a reservation too) claims, never the old offset.
        self.offset = stored * segment_size
        # Under a fresh header no index is used yet, and the stored mark
        # still covers every index below it.
        self._reserved = upload.reserved_segments
        self._spent = stored
        # Anything past the offset is a torn write of a request that died,
        # or segments of an abandoned header; either way it is cut off.
        end = HEADER_BYTES + stored * (segment_size + TAG_BYTES)
        fh.seek(end)
        fh.truncate()
        fh.flush()
        self.appender = _Appender(fh.fileno(), end)

    def put(self, index: int, sealed: bytes) -> None:
        if index >= self._reserved:
            self._reserved = index + RESERVE_SEGMENTS
            self._commit(offset=self.offset, reserved_segments=self._reserved)
        # Spent from here on, whether or not its write ever succeeds.
        self._spent = index + 1
        self.appender.write(sealed)

    def save(self, offset: int, complete: bool) -> None:
        # Synced before it is committed: the database never claims bytes, or
        # a new header, that the disk might not have after a power cut. If
        # a write failed or this raises, nothing is committed: the mark stays
        # ahead and the upload starts over.
        self.appender.flush()
        os.fsync(self._fh.fileno())
        if complete:
            os.replace(self._path, self._path.with_suffix(""))
            # The caller's commit names the published blob: the rename first survives a power cut.
            private_files.sync_dir(self._path.parent)
            return
        # Every index sealed under the header; the offset's segments, as
        # nothing is committed when a write failed.
        self._commit(offset=offset, reserved_segments=self._spent)


class _Appender:
    """Appends to a file in batches, written by a thread of its own while
    the request reads and seals the next batch: the copy into the page
    cache and the file system's work were a third of an upload's CPU time
    on the request's thread, and the client waited for them. One batch is
    in flight at a time, so writes stay in order and memory stays bounded.
    A single write of 1 MiB took two thirds of the time of sixteen of 64
    KiB. The two batch buffers are lent from a pool (app/reusable_buffers.py)
    rather than made per batch. The kernel is asked to start writing each
    batch to disk at once, so that the sync a caller ends with waits for
    little (``writeback``). Nothing is written after a write failed, as
    what reached the file is unknown.

    Used as a context manager around the file's use: no write of a request
    runs on after its file is closed, where its descriptor's number could
    already name another request's file.
    """

    def __init__(self, fd: int, end: int) -> None:
        self._fd, self._end = fd, end
        self._failed = False
        self._writing: Future[None] | None = None

    def __enter__(self) -> _Appender:
        with ExitStack() as loans:
            self._filling = loans.enter_context(_BATCH_BUFFERS.lend())
            self._spare = loans.enter_context(_BATCH_BUFFERS.lend())
            self._loans = loans.pop_all()
        self._batched = 0
        return self

    def __exit__(self, *exc_info: object) -> None:
        # An error of the last write was recorded (``_failed``); the caller is on its way out already.
        if self._writing is not None:
            wait([self._writing])
            self._writing = None
        self._loans.close()

    def write(self, data: bytes | memoryview) -> None:
        if self._batched + len(data) > len(self._filling):
            self._hand_over()
        if len(data) > len(self._filling):
            # A segment larger than a batch (a blob of another segment size): a batch of its own.
            self._written()
            self._submit(bytes(data), len(data))
            return
        self._filling[self._batched : self._batched + len(data)] = data
        self._batched += len(data)
        if self._batched >= WRITE_BATCH_BYTES:
            self._hand_over()

    def flush(self) -> None:
        """Writes what is batched, and returns once it is written; raises if
        this or an earlier write failed."""
        self._hand_over()
        self._written()

    def _hand_over(self) -> None:
        self._written()
        if self._batched:
            self._submit(self._filling, self._batched)
            # Written from one buffer while the other fills: free, as the write before has ended.
            self._filling, self._spare, self._batched = self._spare, self._filling, 0

    def _submit(self, buffer: bytes | memoryview, size: int) -> None:
        self._writing = _writers().submit(self._write, buffer, size, self._end)
        self._end += size

    def _written(self) -> None:
        """Waits for the batch in flight; raises if it or an earlier one failed."""
        if (writing := self._writing) is not None:
            try:
                writing.result()
            finally:
                # Forgotten only once ended: left by an exception (a signal's, say) while the
                # write runs, the exit still waits for it before its buffer goes back to the pool.
                if writing.done():
                    self._writing = None
        if self._failed:
            raise OSError("an earlier write to this file failed")

    def _write(self, buffer: bytes | memoryview, size: int, at: int) -> None:
        try:
            # Short only when the disk filled up: a failure like any other.
            if os.pwrite(self._fd, memoryview(buffer)[:size], at) != size:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except BaseException:
            self._failed = True
            raise
        writeback.start(self._fd, at, size)


# Sixteen sealed segments of the default size fill one exactly; two per
# running upload, kept for as many uploads as writer threads.
_BATCH_BUFFERS = BufferPool(WRITE_BATCH_BYTES // SEGMENT_SIZE * (SEGMENT_SIZE + TAG_BYTES), keep=2 * WRITER_THREADS)


_pool: tuple[int, ThreadPoolExecutor] | None = None
_pool_lock = threading.Lock()


def _writers() -> ThreadPoolExecutor:
    """This process's writer threads. Made in the process that writes: a
    pre-forking server's workers do not inherit the master's threads."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool[0] != os.getpid():
            _pool = (os.getpid(), ThreadPoolExecutor(WRITER_THREADS, thread_name_prefix="koerier-writer"))
        return _pool[1]

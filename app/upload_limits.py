"""What uploads may take of the portal: worker threads, drafts and disk.

An upload is the one request a visitor can keep open as long as they like,
and the one that fills the disk. So:

- **Concurrent uploads** (form posts, tus creations and PATCHes in flight)
  are capped per verified sender and per client network. Each subject has a
  fixed number of lease rows whose primary key is (subject, slot): a request
  claims a slot by inserting it, so no two requests can ever hold the same
  slot, in any worker or process, and there is no count to race on. A lease
  lasts ``LEASE_TTL`` unless renewed; a thread in each process renews its
  running requests' leases, so the slots of a killed worker expire, and the
  next claim removes them.
- **Open drafts** are capped per client network by seats of the same shape,
  which go with their draft (``ON DELETE CASCADE``).
- **Per verified sender**: a draft becomes its sender's when its first upload
  starts (the files step is reached only with a verified address, so this
  is never an address somebody merely typed). Beyond
  ``limits.open_drafts_per_sender`` of them, the least recently used go,
  with their blobs: a draft lives in one browser, and these are the ones its
  owner left behind. Their stored and announced bytes together stay under
  ``limits.draft_bytes_per_sender``; uploads running at the same moment (at
  most ``concurrent_uploads_per_sender``) are each checked against what is
  stored, so together they can pass it by what they themselves bring.
- **Free disk**: no upload starts that would leave the blob store's file
  system with less than ``storage.min_free_bytes``.
- **Read timeout**: a body that sends nothing for
  ``limits.upload_read_timeout_seconds`` ends its request; and a body left
  unread by a refusal is not read by the server afterwards either.

Leases, seats and ownership must be seen by every worker at once, so they
are written in short sessions of their own that commit at once, never in
the request's: on SQLite that would hold the write lock for a whole upload.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from flask import Flask, Request, Response, request
from sqlalchemy import ForeignKey, String, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column
from werkzeug.exceptions import HTTPException
from werkzeug.wsgi import LimitedStream

from . import drafts
from .clients import network
from .clock import utcnow
from .db import Base, UTCDateTime
from .models import Draft, StoredFile, Upload
from .portal import Portal

log = logging.getLogger(__name__)

LEASE_TTL = timedelta(seconds=60)
# What a refused visitor is told to wait: uploads end, slots free up.
RETRY_AFTER_SECONDS = 15


class UploadLease(Base):
    """One running upload's hold on one slot of a sender's or a network's cap."""

    __tablename__ = "upload_lease"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    slot: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    holder: Mapped[str] = mapped_column(String(32), index=True)
    # A draft with an upload running is never discarded for its sender's cap.
    draft_id: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)

    def __repr__(self) -> str:
        return f"<UploadLease {self.key[:8]}/{self.slot} until {self.expires_at}>"


class DraftSeat(Base):
    """One open draft's place in its client network's cap."""

    __tablename__ = "draft_seat"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    slot: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    draft_id: Mapped[str] = mapped_column(ForeignKey("draft.id", ondelete="CASCADE"), unique=True)

    def __repr__(self) -> str:
        return f"<DraftSeat {self.key[:8]}/{self.slot} draft={self.draft_id[:8]}>"


class DraftOwner(Base):
    """The verified sender a draft belongs to, from its first upload on."""

    __tablename__ = "draft_owner"

    draft_id: Mapped[str] = mapped_column(ForeignKey("draft.id", ondelete="CASCADE"), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64), index=True)

    def __repr__(self) -> str:
        return f"<DraftOwner {self.draft_id[:8]} owner={self.owner[:8]}>"


class TooManyUploads(Exception):
    """The sender or their network has as many uploads running as allowed."""


class TooManyDrafts(Exception):
    """The network has as many open drafts as allowed."""


def subject_key(kind: str, subject: str) -> str:
    # Addresses and IPs are kept only as hashes.
    return hashlib.sha256(f"{kind}\x00{subject.lower()}".encode()).hexdigest()


def _take_slot(db: Session, model: type[UploadLease] | type[DraftSeat], key: str, capacity: int, **values: Any) -> bool:
    """Insert the first free slot of ``key``; the primary key decides between racing requests.

    Call it in a transaction that has written already: pysqlite begins
    transactions only at a write, and would commit at the release of a
    savepoint taken before one.
    """
    held = set(db.scalars(select(model.slot).where(model.key == key)))
    for slot in range(capacity):
        if slot in held:
            continue
        try:
            with db.begin_nested():
                db.add(model(key=key, slot=slot, **values))
            return True
        except IntegrityError:
            continue  # claimed a moment ago by another request
    return False


def claim_leases(
    db: Session, holder: str, draft_id: str, caps: list[tuple[str, int]], now: datetime | None = None,
    ttl: timedelta = LEASE_TTL,
) -> bool:
    """A slot under every ``(key, capacity)`` for ``holder``, or none; commits."""
    now = now or utcnow()
    # Leases nobody renewed go first: their requests died with their worker.
    db.execute(delete(UploadLease).where(UploadLease.key.in_([key for key, _ in caps]), UploadLease.expires_at <= now))
    values = {"holder": holder, "draft_id": draft_id, "expires_at": now + ttl}
    if all(_take_slot(db, UploadLease, key, capacity, **values) for key, capacity in caps):
        db.commit()
        return True
    db.rollback()
    return False


def renew_leases(db: Session, holders: list[str], now: datetime | None = None, ttl: timedelta = LEASE_TTL) -> None:
    db.execute(
        update(UploadLease).where(UploadLease.holder.in_(holders)).values(expires_at=(now or utcnow()) + ttl)
        .execution_options(synchronize_session=False)
    )
    db.commit()


def release_leases(db: Session, holder: str) -> None:
    db.execute(delete(UploadLease).where(UploadLease.holder == holder))
    db.commit()


class Leases:
    """This process's running uploads, and the thread that renews their leases."""

    def __init__(self, new_session: Callable[[], Session], ttl: timedelta = LEASE_TTL) -> None:
        self.new_session = new_session
        self.ttl = ttl
        self._held: set[str] = set()
        self._lock = threading.Lock()
        self._renewer_pid: int | None = None

    @contextmanager
    def hold(self, draft_id: str, caps: list[tuple[str, int]]) -> Iterator[None]:
        """A running upload; raises TooManyUploads when a cap is reached."""
        holder = secrets.token_hex(16)
        with self.new_session() as db:
            if not claim_leases(db, holder, draft_id, caps, ttl=self.ttl):
                raise TooManyUploads()
        with self._lock:
            self._held.add(holder)
            if self._renewer_pid != os.getpid():
                # Started here rather than at start-up: a pre-forking server's
                # workers would not inherit a thread of the master.
                self._renewer_pid = os.getpid()
                threading.Thread(target=self._renew, name="koerier-upload-leases", daemon=True).start()
        try:
            yield
        finally:
            with self._lock:
                self._held.discard(holder)
            try:
                with self.new_session() as db:
                    release_leases(db, holder)
            except Exception:  # noqa: BLE001  (the lease expires on its own)
                log.exception("releasing an upload lease failed")

    def _renew(self) -> None:
        while True:
            time.sleep(self.ttl.total_seconds() / 4)
            with self._lock:
                holders = list(self._held)
                if not holders:
                    self._renewer_pid = None
                    return
            try:
                with self.new_session() as db:
                    renew_leases(db, holders, ttl=self.ttl)
            except Exception:  # noqa: BLE001  (tried again at the next turn)
                log.exception("renewing upload leases failed")


def open_draft(db: Session, portal: Portal, ip: str) -> tuple[Draft, drafts.DraftTicket]:
    """A new draft with a seat in its network's cap, and the ticket its
    browser keeps; raises TooManyDrafts.

    The draft and its seat commit together with the request.
    """
    draft, ticket = drafts.create(db)
    db.flush()
    key = subject_key("draft-network", network(ip))
    if not _take_slot(db, DraftSeat, key, portal.settings.limits.open_drafts_per_ip, draft_id=draft.id):
        db.delete(draft)
        raise TooManyDrafts()
    return draft, ticket


def adopt(db: Session, portal: Portal, draft_id: str, sender: str) -> None:
    """The draft of verified ``sender`` starts an upload: it is theirs from now on,
    and their least recently used drafts beyond the cap go. Commits."""
    owner = subject_key("draft-owner", sender)
    # An update first: the sender may have changed the draft's address (and
    # verified the new one) since its first upload.
    if not db.execute(update(DraftOwner).where(DraftOwner.draft_id == draft_id).values(owner=owner)).rowcount:
        try:
            with db.begin_nested():
                db.add(DraftOwner(draft_id=draft_id, owner=owner))
        except IntegrityError:
            pass  # adopted a moment ago by a parallel upload into the same draft
    uploading = select(UploadLease.draft_id).where(UploadLease.expires_at > utcnow())
    others = db.scalars(
        select(Draft).join(DraftOwner, DraftOwner.draft_id == Draft.id)
        .where(DraftOwner.owner == owner, Draft.id != draft_id, Draft.id.not_in(uploading))
        .order_by(Draft.updated_at.desc())
    ).all()
    for old in others[portal.settings.limits.open_drafts_per_sender - 1 :]:
        log.info("discarding draft %s: its sender has newer ones", old.id[:8])
        drafts.discard(db, portal, old)
    db.commit()


def quota_left(db: Session, portal: Portal, sender: str) -> int:
    """Bytes the sender's drafts may still take: files, and announced lengths of running uploads."""
    owned = select(DraftOwner.draft_id).where(DraftOwner.owner == subject_key("draft-owner", sender))
    files = db.scalar(select(func.coalesce(func.sum(StoredFile.size), 0)).where(StoredFile.draft_id.in_(owned)))
    uploads = db.scalar(select(func.coalesce(func.sum(Upload.length), 0)).where(Upload.draft_id.in_(owned)))
    return portal.settings.limits.draft_bytes_per_sender - int(files) - int(uploads)


def space_for(portal: Portal, declared: int) -> bool:
    """Whether ``declared`` more bytes leave the blob store's disk above its watermark."""
    return shutil.disk_usage(portal.store.root).free - declared >= portal.settings.storage.min_free_bytes


def _client_socket(environ: dict[str, Any]) -> socket.socket | None:
    # gunicorn and Werkzeug's development server put the client's socket here.
    sock = environ.get("gunicorn.socket") or environ.get("werkzeug.socket")
    return sock if isinstance(sock, socket.socket) else None


@contextmanager
def read_timeout(environ: dict[str, Any], seconds: float) -> Iterator[None]:
    """Reads of the request body wait at most ``seconds`` for the next bytes.

    A read that times out raises, which ends the request as a dropped
    connection would (Werkzeug reports it as ClientDisconnected).
    """
    sock = _client_socket(environ)
    if sock is None:
        yield
        return
    before = sock.gettimeout()
    sock.settimeout(seconds)
    try:
        yield
    finally:
        try:
            sock.settimeout(before)
        except OSError:
            pass  # the socket closed meanwhile


def stop_reading(environ: dict[str, Any]) -> None:
    """Read nothing more from this request's client: what it sent still in
    the socket, then end of file. Call it once the answer is written: bytes
    the client sends after it make the kernel reset the connection."""
    sock = _client_socket(environ)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RD)
        except OSError:
            pass  # gone already


def _body_left(request: Request) -> bool:
    """Whether the request announced a body that was not read to its end."""
    if not request.content_length:
        return False
    try:
        stream = request.stream
    except HTTPException:
        return True  # refused for its size before anything was read
    # Under gunicorn the stream is limited by the maximum body size, not by
    # the Content-Length, so "exhausted" would mean never: count the bytes.
    return isinstance(stream, LimitedStream) and stream.tell() < request.content_length


@contextmanager
def running(portal: Portal, leases: Leases, environ: dict[str, Any], draft: Draft, ip: str) -> Iterator[None]:
    """An upload into a verified sender's draft, from its first body byte to its last.

    Raises TooManyUploads before anything is read. Whatever the upload
    stores must be committed inside, so that the next upload to get the
    slot sees it when it checks the quota.
    """
    limits = portal.settings.limits
    caps = [
        (subject_key("uploads-sender", draft.sender_email), limits.concurrent_uploads_per_sender),
        (subject_key("uploads-network", network(ip)), limits.concurrent_uploads_per_ip),
    ]
    with leases.hold(draft.id, caps):
        with leases.new_session() as db:
            adopt(db, portal, draft.id, draft.sender_email)
        with read_timeout(environ, limits.upload_read_timeout_seconds):
            yield


def init_app(app: Flask) -> None:
    sessionmaker = app.extensions["koerier.sessionmaker"]
    app.extensions["koerier.upload_leases"] = Leases(sessionmaker)

    @app.after_request
    def _leave_no_body_to_drain(response: Response) -> Response:
        # A request refused before its body was read (an upload over a cap,
        # a forged or malformed one, one too large): gunicorn would read the
        # rest before it closes or reuses the connection, holding the thread,
        # and it bounds that only between reads of a kilobyte each, so a
        # client trickling a byte a second holds it for many minutes. A
        # "Connection: close" header cannot stop it: gunicorn drops it (a
        # hop-by-hop header, which WSGI forbids applications). Shutting the
        # socket's read side once the answer is out ends that drain at once.
        if _body_left(request):
            environ = request.environ
            response.call_on_close(lambda: stop_reading(environ))
        return response

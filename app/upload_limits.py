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
- **Drafts holding files** are capped per client network by seats of the
  same shape, which go with their draft (``ON DELETE CASCADE``). A draft
  takes its seat when its first upload starts, that is from a verified
  sender: an empty draft is a cheap row that goes after
  ``transfer.draft_ttl_hours``, so nothing an unverified visitor can do
  takes a seat and locks the others behind their address out.
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
  system with less than ``storage.min_free_bytes`` once every upload
  admitted before it has stored what it announced: the rest of each
  unfinished resumable upload, and the whole body of each running form
  post or resumable creation (a space claim, kept like a lease). Admissions
  are decided one at a time, in a short transaction holding one lock (the
  database's write lock on SQLite, an advisory lock on PostgreSQL), so
  parallel uploads cannot all pass on the same free space. Bytes a running
  upload has written count twice until it ends (on disk, and still
  promised): the check errs towards "try later", never towards a full disk.
  An S3 bucket has no disk to measure, so there this check does not apply.
- **Read timeout**: a body that sends nothing for
  ``limits.upload_read_timeout_seconds`` ends its request; and a body left
  unread by a refusal is read afterwards only for the moment a proxy needs
  to take the answer (``stop_reading``).

Leases, seats and ownership must be seen by every worker at once, so they
are written in short sessions of their own that commit at once, never in
the request's: on SQLite that would hold the write lock for a whole upload.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from flask import Flask, Request, Response, request
from sqlalchemy import (
    BigInteger, BindParameter, Connection, Engine, ForeignKey, Select, String, bindparam, delete, func, select, text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker
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
# Any constant: names the advisory lock that serialises space admissions on PostgreSQL.
SPACE_LOCK = 0x6B6F6573
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


class SpaceClaim(Base):
    """Bytes of the blob store's disk promised to one running upload request."""

    __tablename__ = "space_claim"

    holder: Mapped[str] = mapped_column(String(32), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)

    def __repr__(self) -> str:
        return f"<SpaceClaim {self.holder[:8]} {self.size} until {self.expires_at}>"


class TooManyUploads(Exception):
    """The sender or their network has as many uploads running as allowed."""


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
    db: Session | Connection, holder: str, draft_id: str, caps: list[tuple[str, int]], now: datetime | None = None,
    ttl: timedelta = LEASE_TTL,
) -> bool:
    """A slot under every ``(key, capacity)`` for ``holder``, or none; commits."""
    now = now or utcnow()
    values = {"holder": holder, "draft_id": draft_id, "expires_at": now + ttl}
    for attempt in range(2):
        if attempt:
            # A cap looks full: leases nobody renewed go, as their requests
            # died with their worker, and the claim is tried once more.
            # Only then, as every chunk of an upload claims.
            db.execute(
                delete(UploadLease).where(UploadLease.key.in_([key for key, _ in caps]), UploadLease.expires_at <= now)
            )
        if _lease_slots(db, caps, values):
            db.commit()
            return True
        db.rollback()
    return False


def _lease_slots(db: Session | Connection, caps: list[tuple[str, int]], values: dict[str, Any]) -> bool:
    """The first free slot of every key, inserted; a slot already taken, even
    a moment ago by another request, is skipped by the database. The first
    slots of all keys go in one statement (usually all there is to it, at
    every chunk), the others one by one."""
    if any(capacity < 1 for _, capacity in caps):
        return False
    dialect = db.dialect if isinstance(db, Connection) else db.get_bind().dialect
    insert = _LEASE_INSERT["postgresql" if dialect.name == "postgresql" else "sqlite"]
    # RETURNING says which rows went in: rowcount is not reported for an insert by every driver.
    taken = set(db.execute(insert, [{"key": key, "slot": 0, **values} for key, _ in caps]).scalars())
    for key, capacity in caps:
        if key in taken:
            continue
        slots = range(1, capacity)
        if not any(db.execute(insert, {"key": key, "slot": slot, **values}).first() is not None for slot in slots):
            return False
    return True


def renew_leases(db: Session, holders: list[str], now: datetime | None = None, ttl: timedelta = LEASE_TTL) -> None:
    """The running uploads' leases and space claims last another ``ttl``."""
    until = (now or utcnow()) + ttl
    for model in (UploadLease, SpaceClaim):
        db.execute(
            update(model).where(model.holder.in_(holders)).values(expires_at=until)
            .execution_options(synchronize_session=False)
        )
    db.commit()


def release_leases(db: Session | Connection, holder: str) -> None:
    db.execute(_LEASE_RELEASE, {"holder": holder})
    db.commit()


def release_space(db: Connection, holder: str) -> None:
    db.execute(delete(SpaceClaim).where(SpaceClaim.holder == holder))
    db.commit()


class Leases:
    """This process's running uploads, and the thread that renews their leases."""

    def __init__(self, engine: Engine, new_durable_session: Callable[[], Session], ttl: timedelta = LEASE_TTL) -> None:
        # Leases and space claims expire on their own: their commits need not
        # wait for the disk (``engine``: app/db.py). Draft seats and owners are
        # durable. Every chunk of an upload claims and releases its leases: on
        # a connection, without a session's work around each statement.
        self.engine = engine
        self.new_session = sessionmaker(engine, expire_on_commit=False)
        self.new_durable_session = new_durable_session
        self.ttl = ttl
        self._held: set[str] = set()
        self._lock = threading.Lock()
        self._renewer_pid: int | None = None

    @contextmanager
    def hold(self, draft_id: str, caps: list[tuple[str, int]]) -> Iterator[str]:
        """A running upload, named by the holder id it yields; raises
        TooManyUploads when a cap is reached. A space claim made in the
        holder's name is renewed with its leases."""
        holder = secrets.token_hex(16)
        with self.engine.connect() as connection:
            if not claim_leases(connection, holder, draft_id, caps, ttl=self.ttl):
                raise TooManyUploads()
        with self._lock:
            self._held.add(holder)
            if self._renewer_pid != os.getpid():
                # Started here rather than at start-up: a pre-forking server's
                # workers would not inherit a thread of the master.
                self._renewer_pid = os.getpid()
                threading.Thread(target=self._renew, name="koerier-upload-leases", daemon=True).start()
        try:
            yield holder
        finally:
            with self._lock:
                self._held.discard(holder)
            self.release(release_leases, holder)

    def release(self, release: Callable[[Connection, str], None], holder: str) -> None:
        """What ``holder`` held goes; a failure is logged, as it expires on its own."""
        try:
            with self.engine.connect() as connection:
                release(connection, holder)
        except Exception:  # noqa: BLE001
            log.exception("releasing what an upload held failed")

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


def adopt(db: Session, portal: Portal, draft_id: str, sender: str, ip: str) -> bool:
    """The draft of verified ``sender`` uploads from ``ip``: it is theirs
    from now on, it holds a seat in its network's cap, and their least
    recently used drafts beyond their cap go. False, with nothing changed,
    when the draft has no seat and its network has none left. Commits.

    Called where an upload starts (a form post, a resumable upload's
    creation), and where a chunk of a resumable upload finds its draft not
    yet its sender's or its sender over the cap (``running``): not at
    every chunk, as only adopting adds drafts to a sender's. So a draft
    spared for an upload running into it goes at the next chunk of any of
    its sender's uploads once that upload has ended.
    """
    owner = subject_key("draft-owner", sender)
    if not _owned_by(db, draft_id, owner) and not _own(db, portal, draft_id, owner, ip):
        db.rollback()
        return False
    uploading = select(UploadLease.draft_id).where(UploadLease.expires_at > utcnow())
    beyond_cap = db.scalars(
        select(Draft).join(DraftOwner, DraftOwner.draft_id == Draft.id)
        .where(DraftOwner.owner == owner, Draft.id != draft_id, Draft.id.not_in(uploading))
        .order_by(Draft.updated_at.desc())
        .offset(portal.settings.limits.open_drafts_per_sender - 1)
    ).all()
    for old in beyond_cap:
        log.info("discarding draft %s: its sender has newer ones", old.id[:8])
        drafts.discard(db, portal, old)
    db.commit()
    return True


def _owned_by(db: Session, draft_id: str, owner: str) -> bool:
    """Whether the draft is ``owner``'s already, with its seat."""
    return db.scalar(_seated_owner(draft_id)) == owner


def _seated_owner(draft_id: str | BindParameter[str]) -> Select[tuple[str]]:
    return (
        select(DraftOwner.owner).join(DraftSeat, DraftSeat.draft_id == DraftOwner.draft_id)
        .where(DraftOwner.draft_id == draft_id)
    )


# The statements every chunk of an upload runs, built once: building one
# and its cache key each time took longer than running it. On the table, so
# that a session runs them as they are, not as the ORM's bulk statements.
_LEASES = UploadLease.__table__
_LEASE_INSERT = {
    name: insert(_LEASES).values({column.name: bindparam(column.name) for column in _LEASES.columns})
    .on_conflict_do_nothing().returning(_LEASES.c.key)
    for name, insert in (("postgresql", postgresql.insert), ("sqlite", sqlite.insert))
}
_LEASE_RELEASE = delete(_LEASES).where(_LEASES.c.holder == bindparam("holder"))
_SETTLED = select(
    _seated_owner(bindparam("draft_id")).scalar_subquery(),
    select(func.count()).select_from(DraftOwner).where(DraftOwner.owner == bindparam("owner")).scalar_subquery(),
)


def _own(db: Session, portal: Portal, draft_id: str, owner: str, ip: str) -> bool:
    """The draft recorded as ``owner``'s, with a seat in its network; False when no seat is left."""
    # An update first: the sender may have changed the draft's address (and
    # verified the new one) since its first upload.
    if not db.execute(update(DraftOwner).where(DraftOwner.draft_id == draft_id).values(owner=owner)).rowcount:
        try:
            with db.begin_nested():
                db.add(DraftOwner(draft_id=draft_id, owner=owner))
        except IntegrityError:
            pass  # adopted a moment ago by a parallel upload into the same draft
    if not _seated(db, draft_id):
        key = subject_key("draft-network", network(ip))
        taken = _take_slot(db, DraftSeat, key, portal.settings.limits.open_drafts_per_ip, draft_id=draft_id)
        # A parallel upload into the same draft may have taken its seat.
        return taken or _seated(db, draft_id)
    return True


def _seated(db: Session, draft_id: str) -> bool:
    return db.scalar(select(DraftSeat.slot).where(DraftSeat.draft_id == draft_id)) is not None


def quota_left(db: Session, portal: Portal, sender: str) -> int:
    """Bytes the sender's drafts may still take: files, and announced lengths of running uploads."""
    owned = select(DraftOwner.draft_id).where(DraftOwner.owner == subject_key("draft-owner", sender))
    files = db.scalar(select(func.coalesce(func.sum(StoredFile.size), 0)).where(StoredFile.draft_id.in_(owned)))
    uploads = db.scalar(select(func.coalesce(func.sum(Upload.length), 0)).where(Upload.draft_id.in_(owned)))
    return portal.settings.limits.draft_bytes_per_sender - int(files) - int(uploads)


def promised_bytes(db: Session, portal: Portal, now: datetime) -> int:
    """What uploads admitted earlier may still write: the rest of every
    resumable upload that can still be resumed, and every live claim.

    One statement, so one snapshot: a creation commits its upload row
    before it drops its claim, and a snapshot that misses the row still
    sees the claim (PostgreSQL gives each statement its own).
    """
    resumable_since = now - timedelta(hours=portal.settings.transfer.draft_ttl_hours)
    rest = (
        select(func.coalesce(func.sum(Upload.length - Upload.offset), 0))
        .where(Upload.updated_at > resumable_since).scalar_subquery()
    )
    claimed = select(func.coalesce(func.sum(SpaceClaim.size), 0)).where(SpaceClaim.expires_at > now).scalar_subquery()
    return int(db.scalar(select(rest + claimed)))


def claim_space(
    db: Session, portal: Portal, holder: str, size: int, now: datetime | None = None, ttl: timedelta = LEASE_TTL,
) -> bool:
    """Promise ``size`` bytes of the store's disk to ``holder`` if they fit
    beside everything promised before, above the watermark. Commits."""
    now = now or utcnow()
    if portal.store.free_bytes() is None:
        return True  # no disk to fill: an object store grows as it is written
    if db.get_bind().dialect.name == "postgresql":
        db.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SPACE_LOCK})
    # A write before anything is read: on SQLite it takes the database's
    # write lock, which the next admission then waits for.
    db.execute(delete(SpaceClaim).where(SpaceClaim.expires_at <= now))
    # Measured under the lock: an upload that ended meanwhile no longer
    # counts as promised, and its bytes are on the disk.
    room = (portal.store.free_bytes() or 0) - promised_bytes(db, portal, now) - size
    if room < portal.settings.storage.min_free_bytes:
        db.rollback()
        return False
    db.add(SpaceClaim(holder=holder, size=size, expires_at=now + ttl))
    db.commit()
    return True


def room_for_rest(portal: Portal, upload: Upload) -> bool:
    """Whether the disk still holds the rest of an admitted resumable upload.

    Its bytes were promised at its creation, so it is refused only when the
    disk really lacks them: measured against all promises, it would be
    refused for the room that uploads running beside it already use.
    """
    free = portal.store.free_bytes()
    return free is None or free >= upload.length - upload.offset


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


# After an answer given with the body unread: how long the rest is read
# and dropped while it keeps coming, and at most.
LINGER_PAUSE_SECONDS = 1.0
LINGER_SECONDS = 5.0


def stop_reading(environ: dict[str, Any]) -> None:
    """Read nothing more from this request's client, once the answer is written.

    Bytes that arrive after the read side is shut make the kernel reset the
    connection. A reverse proxy that passes the body on as it comes (nginx
    with ``proxy_request_buffering off``, as README's Deploy section says)
    may meet that reset on its next write before it has read the answer, and
    then tells the client 502 instead. So first the client learns the answer
    is complete (FIN), and what it still sends is read and dropped for a
    moment (a proxy closes as soon as it has the answer, within
    milliseconds); a client that pauses or goes on sending meets the shut
    read side after ``LINGER_PAUSE_SECONDS`` of silence or
    ``LINGER_SECONDS`` at most, so no one holds the thread for long.
    """
    sock = _client_socket(environ)
    if sock is None:
        return
    try:
        sock.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + LINGER_SECONDS
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(min(left, LINGER_PAUSE_SECONDS))
            if not sock.recv(64 * 1024):
                break
    except OSError:
        pass  # silent for a moment (a timeout), or gone already
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
def running(
    portal: Portal, leases: Leases, environ: dict[str, Any], draft: Draft, ip: str, size: int | None = None,
) -> Iterator[str | None]:
    """An upload into a verified sender's draft, from its first body byte to its last.

    Raises TooManyUploads before anything is read. Yields None when the
    upload may store ``size`` bytes (the next part of a resumable upload
    announces none: its creation claimed them), or why it may store none:
    "drafts" (its network has as many drafts holding files as allowed) or
    "space".
    Whatever the upload stores must be committed inside, so that the next
    upload to get the slot sees it when it checks the quota.
    """
    limits = portal.settings.limits
    caps = [
        (subject_key("uploads-sender", draft.sender_email), limits.concurrent_uploads_per_sender),
        (subject_key("uploads-network", network(ip)), limits.concurrent_uploads_per_ip),
    ]
    claimed = False
    with leases.hold(draft.id, caps) as holder:
        refused = None
        # The next chunk of a resumable upload, into its sender's draft, has
        # nothing to adopt, unless its sender holds drafts beyond the cap.
        if size is not None or not _settled(leases.engine, draft, limits.open_drafts_per_sender):
            # Adopting may discard the sender's old drafts: durable, unlike the leases.
            with leases.new_durable_session() as db:
                refused = None if adopt(db, portal, draft.id, draft.sender_email, ip) else "drafts"
        if refused is None and size is not None:
            with leases.new_session() as db:
                refused = None if claim_space(db, portal, holder, size) else "space"
            claimed = refused is None
        try:
            with read_timeout(environ, limits.upload_read_timeout_seconds):
                yield refused
        finally:
            if claimed:
                leases.release(release_space, holder)


def _settled(engine: Engine, draft: Draft, cap: int) -> bool:
    """Whether the draft is its sender's already, with its seat, and they
    hold no more than ``cap`` drafts: nothing for ``adopt`` to do. One
    statement, on a connection."""
    owner = subject_key("draft-owner", draft.sender_email)
    with engine.connect() as connection:
        found, count = connection.execute(_SETTLED, {"draft_id": draft.id, "owner": owner}).one()
    return found == owner and count <= cap


def init_app(app: Flask) -> None:
    app.extensions["koerier.upload_leases"] = Leases(
        app.extensions["koerier.ephemeral_engine"], app.extensions["koerier.sessionmaker"]
    )
    app.wsgi_app = _closable(app.wsgi_app)  # type: ignore[method-assign]

    @app.after_request
    def _leave_no_body_to_drain(response: Response) -> Response:
        # A request refused before its body was read (an upload over a cap,
        # a forged or malformed one, one too large): gunicorn would read the
        # rest before it closes or reuses the connection, holding the thread,
        # and it bounds that only between reads of a kilobyte each, so a
        # client trickling a byte a second holds it for many minutes.
        # Shutting the socket's read side once the answer is out
        # (stop_reading) ends that drain within a second or so, and the
        # connection is closed: the answer says so, or a client would send
        # its next request (a redirect's GET) on it, to be dropped unread.
        if _body_left(request):
            environ = request.environ
            close = environ.get(CLOSE_CONNECTION)
            if close is not None:
                close()
            response.call_on_close(lambda: stop_reading(environ))
        return response


# What closes the connection after this request's answer, where the server offers it.
CLOSE_CONNECTION = "koerier.close_connection"


def _closable(wsgi_app: Any) -> Any:
    # A "Connection: close" header from the app would be dropped: it is
    # hop-by-hop, which WSGI forbids applications. gunicorn's start_response
    # belongs to its response, which can be told to close (and then says so).
    def app(environ: dict[str, Any], start_response: Any) -> Any:
        force_close = getattr(getattr(start_response, "__self__", None), "force_close", None)
        if callable(force_close):
            environ[CLOSE_CONNECTION] = force_close
        return wsgi_app(environ, start_response)

    return app

"""Database tables. Confidential content is stored only as ciphertext.

In clear stay what the audit trail and the mails need anyway: who sent to
whom, when, sizes and counts. File names, content types and the
confidential message are sealed under the transfer's data key.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON, BigInteger, CheckConstraint, ForeignKey, Index, LargeBinary, String, Text, UniqueConstraint, false,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .clock import utcnow
from .db import Base, UTCDateTime


class Draft(Base):
    """One sender's wizard in progress; lives until committed or abandoned."""

    __tablename__ = "draft"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    # Fixed up front so that key slots, built before the commit, can bind
    # the transfer id into their associated data.
    transfer_id: Mapped[str] = mapped_column(String(36), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    # The DEK wrapped under a secret that only the sender's browser holds.
    wrapped_dek: Mapped[bytes] = mapped_column(LargeBinary)
    # The DEK once app/drafts.py opened it with that secret: in memory for
    # one request, never a column.
    dek = None

    sender_name: Mapped[str] = mapped_column(String(200), default="")
    sender_phone: Mapped[str] = mapped_column(String(40), default="")
    sender_email: Mapped[str] = mapped_column(String(320), default="")
    to_addresses: Mapped[list[str]] = mapped_column(JSON, default=list)
    cc_addresses: Mapped[list[str]] = mapped_column(JSON, default=list)
    bcc_addresses: Mapped[list[str]] = mapped_column(JSON, default=list)
    message_ct: Mapped[bytes | None] = mapped_column(LargeBinary)
    # A refused form of one of the draft's steps, until its page shows it
    # (app/refused_posts.py): sealed under the DEK.
    refusal_ct: Mapped[bytes | None] = mapped_column(LargeBinary)

    options_saved: Mapped[bool] = mapped_column(default=False)
    expires_on: Mapped[date | None]
    recipient_language: Mapped[str] = mapped_column(String(8), default="")
    notify_confirmation: Mapped[bool] = mapped_column(default=True)
    notify_retrieval: Mapped[bool] = mapped_column(default=False)
    expose_filenames: Mapped[bool] = mapped_column(default=False)
    password_mode: Mapped[str] = mapped_column(String(16), default="")
    # A manual password is never stored as it is: the options step turns it
    # into a finished key slot right away (see app/keyslots.py); only a
    # refused options form carries it, sealed, to the page that shows the
    # refusal (refusal_ct).
    pending_slot: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # The recipients' second factor chosen on the options step (None before).
    recipient_verification: Mapped[str | None] = mapped_column(String(8))
    # {address: mobile number (E.164)} as JSON, sealed under the DEK.
    mobiles_ct: Mapped[bytes | None] = mapped_column(LargeBinary)
    # The generated password that goes to the recipients by SMS, sealed under
    # the DEK: kept from the first try to start, so every try sends the same.
    sms_password_ct: Mapped[bytes | None] = mapped_column(LargeBinary)

    subject: Mapped[str | None] = mapped_column(String(300))
    body: Mapped[str | None] = mapped_column(Text)
    # Set when the wizard was opened with "Reply securely".
    reply_to_id: Mapped[str | None] = mapped_column(String(36))
    # The slug of the upload portal (``[[portals]]``) the wizard was opened
    # at: its recipients are the configured ones, never the sender's choice.
    portal_slug: Mapped[str | None] = mapped_column(String(64))
    # The upload request whose personal link opened the wizard: its staff
    # member is the one recipient, its external the sender. No foreign key:
    # a request purged or closed stops the draft, never frees it.
    request_id: Mapped[str | None] = mapped_column(String(36))

    # No delete cascade: committing hands the files over to the transfer, and
    # discarding a draft must delete blobs too, which app/drafts.py does.
    files: Mapped[list[StoredFile]] = relationship(back_populates="draft", order_by="StoredFile.position")
    uploads: Mapped[list[Upload]] = relationship(back_populates="draft", cascade="all, delete-orphan")

    def __repr__(self) -> str:
        return f"<Draft {self.id[:8]} sender={self.sender_email!r} files={len(self.files)}>"


class Transfer(Base):
    """A committed transaction ("transactie")."""

    __tablename__ = "transfer"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    sender_name: Mapped[str] = mapped_column(String(200))
    sender_phone: Mapped[str] = mapped_column(String(40))
    sender_email: Mapped[str] = mapped_column(String(320))
    language: Mapped[str] = mapped_column(String(8))
    sender_language: Mapped[str] = mapped_column(String(8))
    subject: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    message_ct: Mapped[bytes | None] = mapped_column(LargeBinary)
    password_mode: Mapped[str] = mapped_column(String(16))
    notify_confirmation: Mapped[bool]
    notify_retrieval: Mapped[bool]
    expose_filenames: Mapped[bool]
    file_count: Mapped[int]
    total_bytes: Mapped[int] = mapped_column(BigInteger)
    # The sender's private status link: only its hash is kept. The manifest
    # (file ids, names, sizes) is sealed under a key derived from the link,
    # so the status page can name files without the server holding a key.
    status_token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    manifest_ct: Mapped[bytes] = mapped_column(LargeBinary)
    reply_to_id: Mapped[str | None] = mapped_column(String(36))
    # What a recipient proves after the password or link: "none", or a
    # one-time code by "email" or "sms" (app/recipient_codes.py).
    recipient_verification: Mapped[str] = mapped_column(String(8), default="none", server_default="none")
    # The generated password went to the recipients by SMS.
    password_by_sms: Mapped[bool] = mapped_column(default=False, server_default=false())

    recipients: Mapped[list[Recipient]] = relationship(
        back_populates="transfer", order_by="Recipient.id", cascade="all, delete-orphan"
    )
    files: Mapped[list[StoredFile]] = relationship(
        back_populates="transfer", order_by="StoredFile.position", cascade="all, delete-orphan"
    )
    slots: Mapped[list[KeySlot]] = relationship(back_populates="transfer", cascade="all, delete-orphan")

    def __repr__(self) -> str:
        return f"<Transfer {self.id} from={self.sender_email!r} files={self.file_count}>"


class Recipient(Base):
    """One address of a transfer, with its own transaction ID."""

    __tablename__ = "recipient"

    id: Mapped[int] = mapped_column(primary_key=True)
    transfer_id: Mapped[str] = mapped_column(ForeignKey("transfer.id", ondelete="CASCADE"), index=True)
    email: Mapped[str] = mapped_column(String(320))
    kind: Mapped[str] = mapped_column(String(3))  # to, cc, bcc
    access_id: Mapped[str] = mapped_column(String(32), unique=True)
    reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The mobile number for SMS codes (E.164), sealed under the transfer's
    # DEK: readable only once this recipient's password or link was right.
    mobile_ct: Mapped[bytes | None] = mapped_column(LargeBinary)

    transfer: Mapped[Transfer] = relationship(back_populates="recipients")

    def __repr__(self) -> str:
        return f"<Recipient {self.kind} {self.email!r}>"


class KeySlot(Base):
    """The DEK wrapped under a password (Argon2id) or a link secret (HKDF)."""

    __tablename__ = "key_slot"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    transfer_id: Mapped[str] = mapped_column(ForeignKey("transfer.id", ondelete="CASCADE"), index=True)
    # Set for link slots: each recipient's link opens only their own slot.
    recipient_id: Mapped[int | None] = mapped_column(ForeignKey("recipient.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # password, link
    kdf: Mapped[dict[str, Any]] = mapped_column(JSON)
    salt: Mapped[bytes] = mapped_column(LargeBinary)
    wrapped_dek: Mapped[bytes] = mapped_column(LargeBinary)

    transfer: Mapped[Transfer] = relationship(back_populates="slots")

    def __repr__(self) -> str:
        return f"<KeySlot {self.kind} transfer={self.transfer_id}>"


class StoredFile(Base):
    """An encrypted blob, owned by a draft until commit, then by its transfer."""

    __tablename__ = "stored_file"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    draft_id: Mapped[str | None] = mapped_column(ForeignKey("draft.id", ondelete="SET NULL"), index=True)
    transfer_id: Mapped[str | None] = mapped_column(ForeignKey("transfer.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(default=0)
    blob_key: Mapped[str] = mapped_column(String(32), unique=True)
    size: Mapped[int] = mapped_column(BigInteger)
    name_ct: Mapped[bytes] = mapped_column(LargeBinary)
    type_ct: Mapped[bytes] = mapped_column(LargeBinary)
    # What the virus scanner made of the file when it came in (app/uploads.py, ``screen``): "clean";
    # "unscanned", let in without a verdict (scan.on_unavailable = "accept"); "not_required", its rules
    # had scanning off then, so a rule that requires it has it scanned before the transfer starts.
    scanned: Mapped[str] = mapped_column(String(16), server_default="not_required")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    draft: Mapped[Draft | None] = relationship(back_populates="files")
    transfer: Mapped[Transfer | None] = relationship(back_populates="files")

    def __repr__(self) -> str:
        return f"<StoredFile {self.id} size={self.size}>"


class Upload(Base):
    """A resumable (tus) upload in progress. Complete, it becomes the
    StoredFile with the same id and this row goes."""

    __tablename__ = "upload"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    draft_id: Mapped[str] = mapped_column(ForeignKey("draft.id", ondelete="CASCADE"), index=True)
    blob_key: Mapped[str] = mapped_column(String(32), unique=True)
    length: Mapped[int] = mapped_column(BigInteger)
    # Plaintext bytes stored durably and committed: whole segments only.
    offset: Mapped[int] = mapped_column(BigInteger, default=0)
    # Local store: segment indices below this may have been written under
    # the pending file's header: committed before any of them is written,
    # so a nonce is never used twice (app/storage.py). Equal to the
    # offset's segments only when a request ended cleanly; ahead of them,
    # the upload starts over.
    reserved_segments: Mapped[int] = mapped_column(BigInteger, default=0)
    name_ct: Mapped[bytes] = mapped_column(LargeBinary)
    type_ct: Mapped[bytes] = mapped_column(LargeBinary)
    # S3 store (app/s3_store.py): everything an upload needs to go on from
    # any app server. The blob's header (not secret), segments per part,
    # the multipart upload once it has begun, the object holding the sealed
    # segments past the last part, and the SHA-256 of every segment past
    # the offset that may have been sent ("in flight"), 32 bytes each.
    header: Mapped[bytes | None] = mapped_column(LargeBinary)
    part_segments: Mapped[int | None]
    multipart_id: Mapped[str | None] = mapped_column(String(1024))
    tail_key: Mapped[str | None] = mapped_column(String(300))
    in_flight: Mapped[bytes | None] = mapped_column(LargeBinary)
    # S3 store: the request writing the upload holds it until busy_until
    # (renewed while it writes), so a second one, on any app server, cannot
    # interleave its bytes; expires on its own if a node dies.
    busy_by: Mapped[str | None] = mapped_column(String(32))
    busy_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    draft: Mapped[Draft] = relationship(back_populates="uploads")

    def __repr__(self) -> str:
        return f"<Upload {self.id} {self.offset}/{self.length}>"


class UploadPart(Base):
    """A part of an S3 upload's multipart upload, stored and committed. Part
    ``number`` holds the segments from ``(number - 1) * part_segments`` on
    (part 1 begins with the header)."""

    __tablename__ = "upload_part"

    upload_id: Mapped[str] = mapped_column(ForeignKey("upload.id", ondelete="CASCADE"), primary_key=True)
    number: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    etag: Mapped[str] = mapped_column(String(200))

    def __repr__(self) -> str:
        return f"<UploadPart {self.upload_id} #{self.number}>"


class VerificationCode(Base):
    """A mailed code that proves a sender owns an address. Stored as an HMAC.

    It belongs to the browser that asked for it (a hash of the random id in
    that browser's session), so another browser's guesses never reach it.
    """

    __tablename__ = "verification_code"
    __table_args__ = (Index("ix_verification_code_email_browser", "email", "browser"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    browser: Mapped[str] = mapped_column(String(64))
    code_hash: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(default=0)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    def __repr__(self) -> str:
        return f"<VerificationCode {self.email!r} attempts={self.attempts}>"


class AccessThrottle(Base):
    """Failed unlock attempts per transaction ID, known or not, and per key slot.

    Keyed by a hash of whatever ID was typed, so an unknown ID is counted and
    locked exactly like a real one and the lockout itself tells nothing; a
    second row per key slot adds up the guesses made through every
    recipient ID that opens it (see app/access.py).
    """

    __tablename__ = "access_throttle"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(default=0)
    # Lockouts so far: each next one lasts twice as long.
    lockouts: Mapped[int] = mapped_column(default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    def __repr__(self) -> str:
        return f"<AccessThrottle failures={self.failures} locked_until={self.locked_until}>"


class DownloadGrant(Base):
    """A short-lived unlock: the DEK wrapped under a secret only the browser holds."""

    __tablename__ = "download_grant"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    transfer_id: Mapped[str] = mapped_column(ForeignKey("transfer.id", ondelete="CASCADE"), index=True)
    recipient_id: Mapped[int] = mapped_column(ForeignKey("recipient.id", ondelete="CASCADE"), index=True)
    wrapped_dek: Mapped[bytes] = mapped_column(LargeBinary)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)

    transfer: Mapped[Transfer] = relationship()
    recipient: Mapped[Recipient] = relationship()

    def __repr__(self) -> str:
        return f"<DownloadGrant {self.id} transfer={self.transfer_id}>"


class CodeChallenge(Base):
    """A recipient's password (or link) was right, and the transfer wants a
    one-time code too: the DEK waits here, wrapped under a secret only that
    browser holds (as in a download grant), until the code comes back.

    The code is bound to this challenge, so it opens nothing in another
    browser; it is kept only as an HMAC under a server key.
    """

    __tablename__ = "code_challenge"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    transfer_id: Mapped[str] = mapped_column(ForeignKey("transfer.id", ondelete="CASCADE"), index=True)
    recipient_id: Mapped[int] = mapped_column(ForeignKey("recipient.id", ondelete="CASCADE"), index=True)
    wrapped_dek: Mapped[bytes] = mapped_column(LargeBinary)
    channel: Mapped[str] = mapped_column(String(8))  # email, sms
    code_hash: Mapped[bytes | None] = mapped_column(LargeBinary)
    code_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    code_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)

    recipient: Mapped[Recipient] = relationship()

    def __repr__(self) -> str:
        return f"<CodeChallenge {self.id} {self.channel} recipient={self.recipient_id}>"


class Event(Base):
    """Audit trail: facts only, never contents, file names or passwords.

    Append-only in the database itself, not just by habit: triggers
    (app/migrations/versions/0005_audit_retention.py) fail an UPDATE on it,
    whoever issues it, and a DELETE unless an ``AuditPurge`` permit of the
    same transaction covers the row.
    """

    __tablename__ = "event"
    __table_args__ = (Index("ix_event_at", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    kind: Mapped[str] = mapped_column(String(40))
    # No foreign key: the record must outlive the transfer it describes.
    transfer_id: Mapped[str | None] = mapped_column(String(36), index=True)
    actor: Mapped[str] = mapped_column(String(320), default="")
    ip: Mapped[str] = mapped_column(String(45), default="")
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    def __repr__(self) -> str:
        return f"<Event {self.kind} {self.at:%Y-%m-%d %H:%M:%S}>"


class AuditPurge(Base):
    """The retention purge's permit to delete audit events older than ``cutoff``.

    Only ``app.audit.purge`` writes one, and removes it again before its
    transaction ends. The database sees to it that a permit never outlives
    that transaction: ``pending`` names a permit that cannot exist (the only
    id there can be is 1), a foreign key checked at commit, so a transaction
    still holding a permit cannot commit, and no other transaction ever sees
    one.
    """

    __tablename__ = "audit_purge"
    __table_args__ = (
        CheckConstraint("id = 1", name="ck_audit_purge_one"),
        CheckConstraint("pending = 0", name="ck_audit_purge_pending"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False, default=1)
    cutoff: Mapped[datetime] = mapped_column(UTCDateTime)
    pending: Mapped[int] = mapped_column(
        ForeignKey("audit_purge.id", deferrable=True, initially="DEFERRED"), default=0
    )

    def __repr__(self) -> str:
        return f"<AuditPurge before {self.cutoff:%Y-%m-%d %H:%M:%S}>"


class RateCounter(Base):
    """Hits per key in a fixed time window, shared by every worker."""

    __tablename__ = "rate_counter"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    count: Mapped[int] = mapped_column(default=0)

    def __repr__(self) -> str:
        return f"<RateCounter {self.key[:8]} {self.window_start:%H:%M} count={self.count}>"


class Retrieval(Base):
    """A file served to a recipient: once per download session and way of
    serving ("download", "preview", "archive"), until the sender is told.

    A file name is kept only when the transfer shows file names in its mails
    anyway, sealed under a server key between the download and the notice
    mail (minutes); it is erased once the notice is sent.
    """

    __tablename__ = "retrieval"
    __table_args__ = (UniqueConstraint("grant_id", "file_id", "how"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    transfer_id: Mapped[str] = mapped_column(ForeignKey("transfer.id", ondelete="CASCADE"), index=True)
    recipient_id: Mapped[int] = mapped_column(ForeignKey("recipient.id", ondelete="CASCADE"), index=True)
    file_id: Mapped[str] = mapped_column(String(36))
    grant_id: Mapped[str] = mapped_column(String(36), index=True)
    how: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    name_ct: Mapped[bytes | None] = mapped_column(LargeBinary)
    notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    recipient: Mapped[Recipient] = relationship()

    def __repr__(self) -> str:
        return f"<Retrieval {self.how} recipient={self.recipient_id} file={self.file_id}>"


class ExposedNames(Base):
    """The file names of a transfer that shows them in its notification mails,
    sealed under a server key (see app/exposed_names.py); other transfers have no row."""

    __tablename__ = "exposed_names"

    transfer_id: Mapped[str] = mapped_column(ForeignKey("transfer.id", ondelete="CASCADE"), primary_key=True)
    names_ct: Mapped[bytes] = mapped_column(LargeBinary)

    def __repr__(self) -> str:
        return f"<ExposedNames transfer={self.transfer_id}>"


class Lease(Base):
    """Which process runs the clean-up job; renewed while it lives."""

    __tablename__ = "lease"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)

    def __repr__(self) -> str:
        return f"<Lease {self.name} by {self.holder} until {self.expires_at}>"


class UploadRequest(Base):
    """A staff member's request that someone send them files (app/upload_requests.py).

    The personal link carries a 256-bit token; only its SHA-256 is kept.
    """

    __tablename__ = "upload_request"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    staff_email: Mapped[str] = mapped_column(String(320), index=True)
    external_name: Mapped[str] = mapped_column(String(200))
    external_email: Mapped[str] = mapped_column(String(320))
    message: Mapped[str] = mapped_column(Text, default="")
    language: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    # Only tighten what the rules allow (policy.tighten); None: the rules'.
    max_total_bytes: Mapped[int | None] = mapped_column(BigInteger)
    allowed_extensions: Mapped[list[str] | None] = mapped_column(JSON)
    # The last transfer that answered it, and when.
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    transfer_id: Mapped[str | None] = mapped_column(String(36))
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    def __repr__(self) -> str:
        return f"<UploadRequest {self.id} by={self.staff_email!r} from={self.external_email!r}>"

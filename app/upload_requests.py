"""Upload requests: a staff member asks someone outside to send them files.

Staff are the senders whose verified address matches ``[staff] senders``;
they make, list and revoke requests from My transfers, with the address its
code proved. The external gets a mail with a personal link. It opens the
wizard with their address counted as verified for that draft (the link came
to that mailbox) and the staff member as the one recipient, fixed as an
upload portal's are (app/fixed_recipients.py); the request's limits only
tighten the rules'.

The link carries a 256-bit token; the database keeps only its SHA-256 and
finds the request by it, so a copy of the database opens no request and
there is no secret to compare byte by byte. A request is used when its
transfer starts, by a conditional UPDATE (``consume``): of two transfers
started at once from one link, one wins. An unknown, revoked, expired or
used link reads alike: "no longer open".
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from flask_babel import force_locale, gettext
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from . import audit, mails, policy, transactions
from .clock import utcnow
from .ids import new_token
from .models import UploadRequest
from .portal import Portal
from .settings import Settings

TOKEN_MAX_CHARS = 100
STATES = ("open", "fulfilled", "revoked", "expired")


class NotStaff(Exception):
    """The address is not one of the operator's staff patterns."""


class ExpiryRefused(Exception):
    """``reason``: "past" (before today) or "too_late" (beyond ``requests.max_days``)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class NewRequest:
    external_name: str
    external_email: str
    message: str
    expires_on: date
    language: str
    allowed_extensions: list[str] | None = None
    max_total_bytes: int | None = None


def is_staff(settings: Settings, email: str | None) -> bool:
    return bool(email) and any(policy.matches(pattern, email or "") for pattern in settings.staff.senders)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def link(portal: Portal, token: str) -> str:
    return f"{portal.settings.site.base_url.rstrip('/')}/send/request/{token}"


def latest_day(portal: Portal, now: datetime) -> date:
    return now.astimezone(portal.settings.site.zone).date() + timedelta(days=portal.settings.requests.max_days)


def state(settings: Settings, request: UploadRequest, now: datetime | None = None) -> str:
    """One of STATES. A request usable until it expires stays open when answered."""
    expired = request.expires_at <= (now or utcnow())
    if request.revoked_at is not None:
        return "revoked"
    if request.used_at is not None and (expired or settings.requests.reuse == "once"):
        return "fulfilled"
    return "expired" if expired else "open"


@dataclass(frozen=True)
class Source:
    """An open request as the source of a draft's fixed recipients (app/fixed_recipients.py)."""

    request: UploadRequest

    @property
    def addresses(self) -> list[str]:
        return [self.request.staff_email]

    @property
    def sender(self) -> str:
        return self.request.external_email

    @property
    def recipient_language(self) -> str:
        # The staff member wrote the request in it.
        return self.request.language

    @property
    def max_total_bytes(self) -> int | None:
        return self.request.max_total_bytes

    max_files = None

    @property
    def allowed_extensions(self) -> list[str] | None:
        return self.request.allowed_extensions

    def text(self, key: str, language: str, default_language: str) -> str:
        """As an upload portal's: the title, and the staff member's message as the intro."""
        if key == "title":
            return gettext("Files requested by %(email)s", email=self.request.staff_email)
        return self.request.message

    def language(self, key: str, language: str, default_language: str) -> str | None:
        return language if key == "title" else self.request.language


def source(db: Session, settings: Settings, request_id: str, now: datetime | None = None) -> Source | None:
    """The request a draft was opened by, while it is open."""
    request = db.get(UploadRequest, request_id)
    return Source(request) if request is not None and state(settings, request, now) == "open" else None


def find_open(db: Session, settings: Settings, token: str, now: datetime | None = None) -> UploadRequest | None:
    """The request of a personal link, while it is open; None alike for any other."""
    if not token or len(token) > TOKEN_MAX_CHARS:
        return None
    request = db.scalar(select(UploadRequest).where(UploadRequest.token_hash == token_hash(token)))
    return request if request is not None and state(settings, request, now) == "open" else None


def create(
    db: Session, portal: Portal, staff_email: str, new: NewRequest, ip: str = "", now: datetime | None = None
) -> UploadRequest:
    """The request, and its mail to the external, sent before the caller
    commits: if delivery fails (MailError), nothing stays. The mail spends
    one of the staff member's and the network's daily recipients, as a
    transfer's does (transactions.RecipientBudgetExhausted)."""
    now = now or utcnow()
    if not is_staff(portal.settings, staff_email):
        raise NotStaff(staff_email)
    if new.expires_on < now.astimezone(portal.settings.site.zone).date():
        raise ExpiryRefused("past")
    if new.expires_on > latest_day(portal, now):
        raise ExpiryRefused("too_late")
    with db.begin_nested():  # refused, it counts against none of them
        transactions.charge_recipients(db, portal, staff_email, 1, ip, now)
    token = new_token()
    request = UploadRequest(
        id=str(uuid.uuid4()), token_hash=token_hash(token), staff_email=staff_email,
        external_name=new.external_name, external_email=new.external_email, message=new.message.strip(),
        language=new.language, created_at=now,
        expires_at=datetime.combine(new.expires_on, time(23, 59, 59), tzinfo=portal.settings.site.zone),
        max_total_bytes=new.max_total_bytes, allowed_extensions=new.allowed_extensions,
    )
    db.add(request)
    audit.record(
        db, "request_created", actor=staff_email, ip=ip, now=now, request_id=request.id,
        external=new.external_email, expires_at=request.expires_at.isoformat(),
    )
    text, html = mails.render(
        "upload_request", request.language, request=request, link=link(portal, token), site=portal.settings.site,
    )
    with force_locale(request.language):
        subject = gettext("%(email)s asks you to send files", email=staff_email)
    portal.mailer.send([mails.compose(portal.settings, request.external_email, subject, text, html)])
    return request


def of_staff(db: Session, staff_email: str) -> list[UploadRequest]:
    """The staff member's requests not yet purged, newest first."""
    return list(db.scalars(
        select(UploadRequest).where(UploadRequest.staff_email == staff_email)
        .order_by(UploadRequest.created_at.desc(), UploadRequest.id)
    ))


def revoke(
    db: Session, settings: Settings, staff_email: str, request_id: str, ip: str = "", now: datetime | None = None
) -> bool:
    """Closes the staff member's open request; False for any other (not theirs, unknown, closed)."""
    now = now or utcnow()
    if len(request_id) > 36:
        return False
    # Conditional, as ``consume``: of a revoke and a start at the same
    # moment one wins, and a request is never both used and revoked.
    revoked = db.execute(
        update(UploadRequest).where(*_open(settings, request_id, now), UploadRequest.staff_email == staff_email)
        .values(revoked_at=now).execution_options(synchronize_session=False)
    ).rowcount
    if revoked != 1:
        return False
    audit.record(db, "request_revoked", actor=staff_email, ip=ip, now=now, request_id=request_id)
    return True


def _open(settings: Settings, request_id: str, now: datetime) -> list:  # type: ignore[type-arg]
    """The conditions under which the request is open (``state``), for an UPDATE."""
    conditions = [UploadRequest.id == request_id, UploadRequest.revoked_at.is_(None), UploadRequest.expires_at > now]
    if settings.requests.reuse == "once":
        conditions.append(UploadRequest.used_at.is_(None))
    return conditions


def consume(
    db: Session, settings: Settings, request_id: str, transfer_id: str, sender: str, ip: str = "",
    now: datetime | None = None,
) -> bool:
    """The request is used by ``transfer_id``, if it is still open: a
    conditional UPDATE, so that of two transfers started at once one wins
    (PostgreSQL re-checks the condition on the row the first one wrote;
    SQLite has one writer at a time)."""
    now = now or utcnow()
    used = db.execute(
        update(UploadRequest).where(*_open(settings, request_id, now)).values(used_at=now, transfer_id=transfer_id)
        .execution_options(synchronize_session=False)
    ).rowcount
    if used != 1:
        return False
    audit.record(db, "request_used", transfer_id=transfer_id, actor=sender, ip=ip, now=now, request_id=request_id)
    return True


def purge_expired(db: Session, now: datetime) -> int:
    """Requests past their expiry go, with the addresses and message they hold."""
    expired = db.scalars(select(UploadRequest).where(UploadRequest.expires_at <= now)).all()
    for request in expired:
        audit.record(db, "request_expired", actor=request.staff_email, now=now, request_id=request.id)
    db.execute(delete(UploadRequest).where(UploadRequest.id.in_([r.id for r in expired])))
    return len(expired)

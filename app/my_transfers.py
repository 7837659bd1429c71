"""My transfers: a sender who proved their address sees and manages what they sent.

The proof is the mailed verification code (app/verification.py, with its
limits and lockouts); the views keep the verified address in the browser's
session for ``verification.my_transfers_minutes``. Every function here takes
that address and reaches a transfer only if it was sent from it and has not
expired: an unknown id and another sender's id answer alike (None), so
nothing here tells one address about another's transfers.

What the pages show is what the server holds in clear (docs/FORMAT.md, "In
clear"): recipients, subject and text of the notification mail, dates,
sizes, and who opened and downloaded what when. File names only for a
transfer that shows them in its mails (app/exposed_names.py); never a file's
content or the confidential message, which only a password or link opens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import audit, exposed_names, policy, ratelimit, status, transactions
from .clock import utcnow
from .ids import group
from .models import Event, Recipient, Transfer
from .portal import Portal

DAY = timedelta(days=1)


class ExpiryRefused(Exception):
    """``reason``: "past" (before today) or "too_late" (after ``latest``)."""

    def __init__(self, reason: str, latest: date) -> None:
        super().__init__(reason)
        self.reason, self.latest = reason, latest


class CannotResend(Exception):
    """A transfer without a password: its key was only in the first mail's link."""


@dataclass(frozen=True)
class Overview:
    transfer: Transfer
    opened: int


@dataclass(frozen=True)
class FileLine:
    position: int
    size: int
    name: str | None


@dataclass
class RecipientStatus:
    id: int
    email: str
    kind: str
    access_id: str  # as mails show it
    notified: list[datetime]
    opened_at: datetime | None
    downloads: list[tuple[FileLine, datetime]] = field(default_factory=list)


@dataclass(frozen=True)
class Details:
    transfer: Transfer
    files: list[FileLine]
    names_known: bool
    recipients: list[RecipientStatus]
    earliest: date
    latest: date

    @property
    def can_resend(self) -> bool:
        return self.transfer.password_mode != "none"

    @property
    def can_change_expiry(self) -> bool:
        return self.earliest <= self.latest


def sent_by(db: Session, email: str, now: datetime | None = None) -> list[Overview]:
    """The transfers ``email`` sent that still exist, newest first."""
    transfers = db.scalars(
        select(Transfer)
        .where(Transfer.sender_email == email, Transfer.expires_at > (now or utcnow()))
        .order_by(Transfer.created_at.desc(), Transfer.id)
    ).all()
    opened = {
        (transfer_id, actor)
        for transfer_id, actor in db.execute(
            select(Event.transfer_id, Event.actor).where(
                Event.kind == "download_unlocked", Event.transfer_id.in_([t.id for t in transfers])
            )
        )
    }
    return [Overview(t, sum((t.id, r.email) in opened for r in t.recipients)) for t in transfers]


def find(db: Session, email: str, transfer_id: str, now: datetime | None = None) -> Transfer | None:
    """The transfer, if ``email`` sent it and it has not expired; None alike for any other."""
    transfer = db.get(Transfer, transfer_id) if len(transfer_id) <= 36 else None
    if transfer is None or transfer.sender_email != email or transfer.expires_at <= (now or utcnow()):
        return None
    return transfer


def details(db: Session, portal: Portal, transfer: Transfer, now: datetime | None = None) -> Details:
    """Per recipient: when notified, when first opened, which file when (from the retrieval records)."""
    names = exposed_names.find(db, portal, transfer.id)
    lines = {
        f.id: FileLine(n, f.size, names[n - 1] if names and n <= len(names) else None)
        for n, f in enumerate(transfer.files, start=1)
    }
    resent: dict[int, list[datetime]] = {}
    for event in db.scalars(
        select(Event).where(Event.transfer_id == transfer.id, Event.kind == "notification_resent").order_by(Event.at)
    ):
        resent.setdefault(event.data.get("recipient_id"), []).append(event.at)
    # File ids stand for themselves here: the lines carry what may be shown.
    activity = status.activity(db, transfer, {file_id: file_id for file_id in lines})
    recipients = [
        RecipientStatus(
            r.id, r.email, r.kind, group(r.access_id), [transfer.created_at, *resent.get(r.id, [])], seen.opened_at,
            [(lines[file_id], at) for file_id, at in seen.downloads if file_id in lines],
        )
        for r, seen in zip(transfer.recipients, activity)
    ]
    earliest, latest = expiry_range(portal, transfer, now)
    return Details(transfer, list(lines.values()), names is not None, recipients, earliest, latest)


def expiry_range(portal: Portal, transfer: Transfer, now: datetime | None = None) -> tuple[date, date]:
    """The dates the expiration date may be changed to: from today, and up to
    the sender's rule's maximum counted from the day the transfer was sent.

    Rules that no longer allow these recipients allow no later date than
    the one set.
    """
    zone = portal.settings.site.zone
    today = (now or utcnow()).astimezone(zone).date()
    decision = policy.decide(
        portal.settings, transfer.sender_email, [r.email for r in transfer.recipients], transfer.sender_language
    )
    latest = transfer.created_at.astimezone(zone).date() + timedelta(days=decision.limits.max_expiry_days)
    if not decision.allowed:
        latest = min(latest, transfer.expires_at.astimezone(zone).date())
    return today, latest


def change_expiry(
    db: Session, portal: Portal, transfer: Transfer, day: date, ip: str = "", now: datetime | None = None
) -> None:
    """Set a new expiration date within ``expiry_range``, or raise ExpiryRefused."""
    now = now or utcnow()
    earliest, latest = expiry_range(portal, transfer, now)
    if day < earliest:
        raise ExpiryRefused("past", latest)
    if day > latest:
        raise ExpiryRefused("too_late", latest)
    before = transfer.expires_at
    transfer.expires_at = transactions.expiry_instant(portal, day)
    audit.record(
        db, "transfer_expiry_changed", transfer_id=transfer.id, actor=transfer.sender_email, ip=ip, now=now,
        before=before.isoformat(), after=transfer.expires_at.isoformat(),
    )


def resend(
    db: Session, portal: Portal, transfer: Transfer, recipient_id: int, ip: str = "", now: datetime | None = None
) -> Recipient | None:
    """Mail one recipient their notification again, as the first one was.

    The server cannot decrypt anything of the transfer, and needs nothing of
    it: subject and text are in clear, file names only where the sender
    showed them; the password was never in a mail. A no-password transfer's
    key was only in its first mail, so that one raises CannotResend.
    Counted per recipient and day (ratelimit.RateLimited beyond
    ``limits.notification_resends_per_recipient_per_day``), and against the
    sender's and the network's recipient budgets (RecipientBudgetExhausted). Returns None for
    a recipient not of this transfer; may raise mailer.MailError.
    """
    now = now or utcnow()
    recipient = next((r for r in transfer.recipients if r.id == recipient_id), None)
    if recipient is None:
        return None
    if transfer.password_mode == "none":
        raise CannotResend()
    with db.begin_nested():  # refused, it counts against none of them
        ratelimit.hit(
            db, "notification-resend", f"{transfer.id}\x00{recipient.id}",
            portal.settings.limits.notification_resends_per_recipient_per_day, DAY, now,
        )
        # A mail sent again is a mail like any other: it spends the day's recipient budgets.
        transactions.charge_recipients(db, portal, transfer.sender_email, 1, ip, now)
    mail = transactions.notification_mail(portal, transfer, recipient, exposed_names.find(db, portal, transfer.id) or [], None)
    audit.record(
        db, "notification_resent", transfer_id=transfer.id, actor=transfer.sender_email, ip=ip, now=now,
        recipient_id=recipient.id, recipient=recipient.email,
    )
    # Sent before the request commits: if delivery fails, the count and the record roll back with it.
    portal.mailer.send([mail])
    return recipient


def opened(db: Session, email: str, ip: str = "", now: datetime | None = None) -> None:
    """A browser opened My transfers for ``email`` (after its code)."""
    audit.record(db, "my_transfers_opened", actor=email, ip=ip, now=now)


def reported(db: Session, transfer: Transfer, ip: str = "", now: datetime | None = None) -> None:
    """The sender looked at (and may print) the transfer's report."""
    audit.record(db, "transfer_report_viewed", transfer_id=transfer.id, actor=transfer.sender_email, ip=ip, now=now)

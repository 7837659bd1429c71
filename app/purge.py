"""The clean-up job: expiry by crypto-shredding, abandoned drafts, expired
upload requests, stale rows, retrieval notices and reminders, and the audit
trail's term.

Every step is idempotent and commits on its own, so a crash half-way (or a
blob that is already gone) is finished by the next run. An expired transfer
goes in three committed steps: key slots and grants (from then on its
ciphertext is noise), then blobs, then rows. Only the audit trail remains,
for ``retention.audit_months``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import datetime, timedelta

from flask_babel import force_locale, gettext
from sqlalchemy import delete, exists, or_, select
from sqlalchemy.orm import Session

from . import audit, db as dbmod, drafts, mails, metrics, retrievals, upload_requests
from .clock import utcnow
from .ids import group
from .mailer import MailError
from .models import (
    AccessThrottle, CodeChallenge, DownloadGrant, Draft, Event, KeySlot, RateCounter, Recipient, StoredFile, Transfer,
    Upload, VerificationCode,
)
from .portal import Portal
from .storage import StorageUnavailable
from .transactions import download_link

log = logging.getLogger(__name__)


@dataclass
class Report:
    transfers_expired: int = 0
    drafts_removed: int = 0
    uploads_removed: int = 0
    orphan_blobs_removed: int = 0
    requests_removed: int = 0
    codes_removed: int = 0
    grants_removed: int = 0
    counters_removed: int = 0
    events_removed: int = 0
    notices_sent: int = 0
    reminders_sent: int = 0
    failures: int = 0

    def lines(self) -> list[str]:
        return [f"{f.name.replace('_', ' ')}: {getattr(self, f.name)}" for f in fields(self)]


@metrics.PURGE_DURATION.time()
def run(new_session: Callable[[], Session], portal: Portal, now: datetime | None = None) -> Report:
    now = now or utcnow()
    report = Report()
    with new_session() as db:
        _expire_transfers(db, portal, now, report)
        _remove_abandoned_drafts(db, portal, now, report)
        _remove_orphan_blobs(db, portal, now, report)
        report.requests_removed = upload_requests.purge_expired(db, now)
        _remove_stale_rows(db, now, report)
        _purge_audit_trail(db, portal, now, report)
        report.notices_sent = retrievals.send_due(db, portal, now)
        _send_reminders(db, portal, now, report)
        db.commit()
        dbmod.compact_deleted(db)
    return report


def _expire_transfers(db: Session, portal: Portal, now: datetime, report: Report) -> None:
    for transfer_id in db.scalars(select(Transfer.id).where(Transfer.expires_at <= now)).all():
        try:
            expire(db, portal, transfer_id, now)
            report.transfers_expired += 1
        except Exception:  # noqa: BLE001  (one stuck transfer must not stop the others)
            db.rollback()
            report.failures += 1
            log.exception("expiring transfer %s failed; the next run goes on from here", transfer_id)


def expire(db: Session, portal: Portal, transfer_id: str, now: datetime) -> None:
    """Shred one transfer in three committed steps (see the module docstring)."""
    db.execute(delete(KeySlot).where(KeySlot.transfer_id == transfer_id))
    db.execute(delete(DownloadGrant).where(DownloadGrant.transfer_id == transfer_id))
    db.execute(delete(CodeChallenge).where(CodeChallenge.transfer_id == transfer_id))
    db.commit()
    for blob_key in db.scalars(select(StoredFile.blob_key).where(StoredFile.transfer_id == transfer_id)).all():
        portal.store.delete(blob_key)
    transfer = db.get(Transfer, transfer_id)
    if transfer is not None:
        audit.record(db, "transfer_expired", transfer_id=transfer_id, actor=transfer.sender_email, now=now)
        db.delete(transfer)
    db.commit()


def _remove_abandoned_drafts(db: Session, portal: Portal, now: datetime, report: Report) -> None:
    idle = timedelta(hours=portal.settings.transfer.draft_ttl_hours)
    for draft in db.scalars(select(Draft).where(Draft.updated_at <= now - idle)).all():
        drafts.discard(db, portal, draft)
        db.commit()
        report.drafts_removed += 1
    # An upload left unfinished in a draft that is still in use.
    for upload in db.scalars(select(Upload).where(Upload.updated_at <= now - idle)).all():
        try:
            portal.store.delete(upload.blob_key)
        except StorageUnavailable:
            report.failures += 1
            log.warning("upload %s stays until the next run: the store is unavailable", upload.id, exc_info=True)
            continue
        db.delete(upload)
        db.commit()
        report.uploads_removed += 1


def _remove_orphan_blobs(db: Session, portal: Portal, now: datetime, report: Report) -> None:
    """Blobs, tails and multipart uploads no row names: a crash between
    storing them and the commit, or a clean-up the store refused.

    Only old ones: something younger than a draft's lifetime may belong to
    an upload whose row is about to be committed.
    """
    known: set[str] = set(db.scalars(select(StoredFile.blob_key)))
    for row in db.execute(select(Upload.blob_key, Upload.tail_key, Upload.multipart_id)):
        known.update(filter(None, row))
    cutoff = now - timedelta(hours=portal.settings.transfer.draft_ttl_hours)
    try:
        report.orphan_blobs_removed = portal.store.sweep(known, cutoff)
    except StorageUnavailable:
        report.failures += 1
        log.warning("the orphan sweep waits for the next run: the store is unavailable", exc_info=True)


def _remove_stale_rows(db: Session, now: datetime, report: Report) -> None:
    report.codes_removed = db.execute(
        delete(VerificationCode).where(or_(VerificationCode.used_at.is_not(None), VerificationCode.expires_at <= now))
    ).rowcount
    report.grants_removed = db.execute(delete(DownloadGrant).where(DownloadGrant.expires_at <= now)).rowcount
    db.execute(delete(CodeChallenge).where(CodeChallenge.expires_at <= now))
    # Counters of windows long past, and throttles quiet for a day, count nothing any more.
    report.counters_removed = db.execute(delete(RateCounter).where(RateCounter.window_start <= now - timedelta(days=2))).rowcount
    db.execute(
        delete(AccessThrottle).where(
            AccessThrottle.updated_at <= now - timedelta(days=1),
            or_(AccessThrottle.locked_until.is_(None), AccessThrottle.locked_until <= now),
        )
    )
    db.commit()


def _purge_audit_trail(db: Session, portal: Portal, now: datetime, report: Report) -> None:
    cutoff = audit.retention_cutoff(now, portal.settings.retention.audit_months)
    try:
        while True:
            removed = audit.purge(db, cutoff, now)
            db.commit()
            report.events_removed += removed
            if removed < audit.PURGE_BATCH:
                return
    except Exception:  # noqa: BLE001  (notices and reminders still go out)
        db.rollback()
        report.failures += 1
        log.exception("purging the audit trail failed; the next run tries again")


def _send_reminders(db: Session, portal: Portal, now: datetime, report: Report) -> None:
    days = portal.settings.retention.reminder_days_before
    if not days:
        return
    opened = exists().where(
        Event.transfer_id == Recipient.transfer_id, Event.actor == Recipient.email, Event.kind == "download_unlocked"
    )
    due = db.scalars(
        select(Recipient)
        .join(Transfer)
        .where(
            Recipient.reminded_at.is_(None),
            Transfer.expires_at > now,
            Transfer.expires_at <= now + timedelta(days=days),
            ~opened,
        )
    ).all()
    for recipient in due:
        transfer = recipient.transfer
        text, html = mails.render(
            "reminder", transfer.language, transfer=transfer, access_id=group(recipient.access_id),
            link=_reminder_link(portal, recipient), site=portal.settings.site,
        )
        with force_locale(transfer.language):
            subject = gettext("Reminder: %(subject)s", subject=transfer.subject)
        try:
            portal.mailer.send([mails.compose(portal.settings, recipient.email, subject, text, html)])
        except MailError:
            report.failures += 1
            continue
        recipient.reminded_at = now
        db.commit()
        report.reminders_sent += 1


def _reminder_link(portal: Portal, recipient: Recipient) -> str | None:
    # A no-password link carries a secret that only the first mail had.
    if recipient.transfer.password_mode == "none":
        return None
    return download_link(portal, recipient, None)

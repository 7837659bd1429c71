"""Telling the sender when recipients retrieve files ("Informeer mij zodra
bestanden zijn opgehaald"): the first download of each file by each
recipient, one mail per download session rather than one per file."""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime, timedelta

from flask_babel import force_locale, gettext
from sqlalchemy import select
from sqlalchemy.orm import Session

from . import mails
from .clock import utcnow
from .crypto.keys import unwrap, wrap
from .mailer import MailError
from .models import DownloadGrant, Recipient, Retrieval, Transfer
from .portal import Portal

log = logging.getLogger(__name__)


def _aad(recipient_id: int, file_id: str) -> bytes:
    return f"notice/{recipient_id}/{file_id}".encode()


def record(
    db: Session, portal: Portal, transfer: Transfer, recipient: Recipient, grant_id: str,
    files: list[tuple[str, str]], now: datetime | None = None,
) -> None:
    """Note first downloads of (file id, name) pairs; later ones are not news."""
    now = now or utcnow()
    seen = set(db.scalars(select(Retrieval.file_id).where(Retrieval.recipient_id == recipient.id)))
    for file_id, name in files:
        if file_id in seen:
            continue
        seen.add(file_id)
        sealed = wrap(portal.notice_key, name.encode(), _aad(recipient.id, file_id)) if transfer.notify_retrieval else None
        db.add(
            Retrieval(
                transfer_id=transfer.id, recipient_id=recipient.id, file_id=file_id, grant_id=grant_id, at=now,
                name_ct=sealed, notified_at=None if transfer.notify_retrieval else now,
            )
        )


def send_due(db: Session, portal: Portal, now: datetime | None = None) -> int:
    """Mail each download session that has gone quiet; returns mails sent."""
    now = now or utcnow()
    quiet = timedelta(minutes=portal.settings.retention.notice_quiet_minutes)
    pending: dict[str, list[Retrieval]] = defaultdict(list)
    for row in db.scalars(select(Retrieval).where(Retrieval.notified_at.is_(None)).order_by(Retrieval.at)):
        pending[row.grant_id].append(row)
    sent = 0
    for grant_id, rows in pending.items():
        grant = db.get(DownloadGrant, grant_id)
        session_over = grant is None or grant.expires_at <= now or max(r.at for r in rows) <= now - quiet
        if not session_over:
            continue
        try:
            portal.mailer.send([_notice(db, portal, rows)])
        except MailError:
            log.error("retrieval notice for session %s not sent; will retry", grant_id)
            continue
        for row in rows:
            row.notified_at, row.name_ct = now, None
        db.commit()
        sent += 1
    return sent


def _notice(db: Session, portal: Portal, rows: list[Retrieval]):  # type: ignore[no-untyped-def]
    transfer = db.get(Transfer, rows[0].transfer_id)
    assert transfer is not None
    recipient = rows[0].recipient
    files = [
        (unwrap(portal.notice_key, r.name_ct, _aad(r.recipient_id, r.file_id)).decode() if r.name_ct else "?", r.at)
        for r in rows
    ]
    language = transfer.sender_language
    text, html = mails.render(
        "retrieved", language, transfer=transfer, recipient=recipient, files=files, site=portal.settings.site
    )
    with force_locale(language):
        subject = gettext("%(email)s has downloaded files of “%(subject)s”", email=recipient.email, subject=transfer.subject)
    return mails.compose(portal.settings, transfer.sender_email, subject, text, html)

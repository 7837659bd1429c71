"""Retrievals: every file served to a recipient leaves a trace, and the sender
can be told ("Informeer mij zodra bestanden zijn opgehaald").

Any byte of a file sent out counts: a download, a preview, a range request
of a resuming browser or video player, the ZIP of all files. Each file is
recorded once per download session (grant) and way of serving, in the same
statement that checks for an earlier record, so parallel range requests
cannot skip the record or double it. The audit event is written with it.

The sender's notice is one mail per recipient, however many download
sessions it covers: whoever holds a password or a link can open session
after session (see app/access.py), and must not make the portal mail the
sender for each. It is due once one of those sessions is over (finished,
expired, or quiet for ``retention.notice_quiet_minutes``), so a recipient
who keeps downloading holds it back no longer than a grant lasts; and no
sooner than that quiet time after the last notice about the same recipient.
It lists the first sessions and counts the rest, so its size stays bounded.
File names are confidential: the server cannot read them after the commit,
so the notice names files only when the sender chose to show file names in
the notification mails; the names are then sealed under a server key for the
minutes until the notice is sent. Otherwise it says which file (by position
and size) and points to the private status page, which can name them.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask_babel import force_locale, gettext
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from . import audit, mails, metrics
from .clock import utcnow
from .db import insert_new
from .crypto.keys import unwrap, wrap
from .mailer import MailError
from .models import DownloadGrant, Retrieval, StoredFile, Transfer
from .portal import Portal

log = logging.getLogger(__name__)

# Download sessions a notice lists; the rest are counted (the status page lists them all).
LISTED_SESSIONS = 10

AUDIT_KINDS = {"download": "file_downloaded", "preview": "file_previewed", "archive": "archive_downloaded"}


def _aad(grant_id: str, file_id: str) -> bytes:
    return f"notice/v2/{grant_id}/{file_id}".encode()


@dataclass(frozen=True)
class Served:
    """Who was served files, in which download session, from where."""

    transfer: Transfer
    recipient_id: int
    recipient_email: str
    grant_id: str
    ip: str = ""


def record(
    db: Session, portal: Portal, served: Served, how: str, files: list[tuple[StoredFile, str]],
    now: datetime | None = None,
) -> None:
    """Note that ``files`` (file, name) are being served ``how``: "download",
    "preview" or "archive". Repeats within a download session are no news."""
    now = now or utcnow()
    transfer = served.transfer
    sealing = transfer.notify_retrieval and transfer.expose_filenames
    new = []
    for stored, name in files:
        inserted = insert_new(
            db, Retrieval,
            transfer_id=transfer.id, recipient_id=served.recipient_id, file_id=stored.id, grant_id=served.grant_id,
            how=how, at=now,
            name_ct=wrap(portal.notice_key, name.encode(), _aad(served.grant_id, stored.id)) if sealing else None,
            notified_at=None if transfer.notify_retrieval else now,
        )
        if inserted:
            new.append(stored)
    if not new:
        return
    metrics.DOWNLOADS.labels(how).inc()
    details = {"file_ids": [f.id for f in new]} if how == "archive" else {"file_id": new[0].id, "size": new[0].size}
    audit.record(
        db, AUDIT_KINDS[how], transfer_id=transfer.id, actor=served.recipient_email, ip=served.ip, now=now,
        grant=served.grant_id, **details,
    )


def send_due(db: Session, portal: Portal, now: datetime | None = None) -> int:
    """Mail each recipient's pending retrievals that are due; returns mails sent."""
    now = now or utcnow()
    quiet = timedelta(minutes=portal.settings.retention.notice_quiet_minutes)
    pending: dict[tuple[str, int], list[Retrieval]] = defaultdict(list)
    for row in db.scalars(select(Retrieval).where(Retrieval.notified_at.is_(None)).order_by(Retrieval.at, Retrieval.id)):
        pending[(row.transfer_id, row.recipient_id)].append(row)
    sent = 0
    for (transfer_id, recipient_id), rows in pending.items():
        if not _due(db, rows, now, quiet):
            continue
        try:
            portal.mailer.send([_notice(db, portal, rows)])
        except MailError:
            log.error("retrieval notice for recipient %s of %s not sent; will retry", recipient_id, transfer_id)
            continue
        for row in rows:
            row.notified_at, row.name_ct = now, None
        db.commit()
        sent += 1
    return sent


def _sessions(rows: list[Retrieval]) -> dict[str, list[Retrieval]]:
    """Rows by download session, in the order the sessions began."""
    sessions: dict[str, list[Retrieval]] = defaultdict(list)
    for row in rows:
        sessions[row.grant_id].append(row)
    return sessions


def _due(db: Session, rows: list[Retrieval], now: datetime, quiet: timedelta) -> bool:
    last_notice = db.scalar(
        select(func.max(Retrieval.notified_at)).where(
            Retrieval.transfer_id == rows[0].transfer_id, Retrieval.recipient_id == rows[0].recipient_id
        )
    )
    if last_notice is not None and last_notice > now - quiet:
        return False
    for grant_id, session in _sessions(rows).items():
        grant = db.get(DownloadGrant, grant_id)
        if grant is None or grant.expires_at <= now or max(r.at for r in session) <= now - quiet:
            return True
    return False


@dataclass(frozen=True)
class NoticeLine:
    position: int
    size: int
    name: str | None
    at: datetime


def _notice(db: Session, portal: Portal, rows: list[Retrieval]):  # type: ignore[no-untyped-def]
    transfer = db.get(Transfer, rows[0].transfer_id)
    assert transfer is not None
    recipient = rows[0].recipient
    positions = {f.id: (n, f.size) for n, f in enumerate(transfer.files, start=1)}
    sessions = list(_sessions(rows).values())
    listed = [_lines(portal, session, positions) for session in sessions[:LISTED_SESSIONS]]
    language = transfer.sender_language
    text, html = mails.render(
        "retrieved", language, transfer=transfer, recipient=recipient, sessions=listed,
        unlisted=len(sessions) - len(listed), unnamed=any(line.name is None for lines in listed for line in lines),
        site=portal.settings.site,
    )
    with force_locale(language):
        subject = gettext("%(email)s has downloaded files of “%(subject)s”", email=recipient.email, subject=transfer.subject)
    return mails.compose(portal.settings, transfer.sender_email, subject, text, html)


def _lines(portal: Portal, session: list[Retrieval], positions: dict[str, tuple[int, int]]) -> list[NoticeLine]:
    """One line per file served in the session, however many ways it was served."""
    lines: dict[str, NoticeLine] = {}
    for r in session:
        if r.file_id in lines or r.file_id not in positions:
            continue
        name = unwrap(portal.notice_key, r.name_ct, _aad(r.grant_id, r.file_id)).decode() if r.name_ct else None
        lines[r.file_id] = NoticeLine(*positions[r.file_id], name, r.at)
    return sorted(lines.values(), key=lambda x: x.position)

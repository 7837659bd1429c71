"""The sender's private status page: who opened what, and "withdraw".

The link carries a 256-bit token; the database keeps only its SHA-256.
The file manifest is sealed under a key derived from the token, so the page
can list file names while the server, without the link, cannot.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime

from flask_babel import force_locale, gettext
from sqlalchemy import select
from sqlalchemy.orm import Session

from . import audit, db as dbmod, mails, shredding
from .crypto.keys import derive, unwrap, wrap
from .models import Event, Retrieval, Transfer
from .portal import Portal


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _manifest_key(token: str) -> bytes:
    return derive(token.encode(), "koerier/status/v1")


def seal_manifest(token: str, transfer_id: str, files: list[dict[str, object]]) -> bytes:
    return wrap(_manifest_key(token), json.dumps(files).encode(), f"manifest/{transfer_id}".encode())


def manifest(token: str, transfer: Transfer) -> list[dict[str, object]]:
    return json.loads(unwrap(_manifest_key(token), transfer.manifest_ct, f"manifest/{transfer.id}".encode()))


def link(portal: Portal, token: str) -> str:
    return f"{portal.settings.site.base_url.rstrip('/')}/send/status/{token}"


def find(db: Session, token: str) -> Transfer | None:
    if not token or len(token) > 100:
        return None
    return db.scalar(select(Transfer).where(Transfer.status_token_hash == token_hash(token)))


@dataclass
class RecipientActivity:
    email: str
    kind: str
    opened_at: datetime | None = None
    downloads: list[tuple[str, datetime]] = field(default_factory=list)


def activity(db: Session, transfer: Transfer, names: dict[str, str]) -> list[RecipientActivity]:
    rows = {r.id: RecipientActivity(r.email, r.kind) for r in transfer.recipients}
    by_email = {r.email: rows[r.id] for r in transfer.recipients}
    for event in db.scalars(
        select(Event).where(Event.transfer_id == transfer.id, Event.kind == "download_unlocked").order_by(Event.at)
    ):
        row = by_email.get(event.actor)
        if row is not None and row.opened_at is None:
            row.opened_at = event.at
    seen: set[tuple[str, str]] = set()
    for retrieval in db.scalars(
        select(Retrieval).where(Retrieval.transfer_id == transfer.id).order_by(Retrieval.at, Retrieval.id)
    ):
        # A file previewed and then downloaded in one session is one line.
        if (retrieval.grant_id, retrieval.file_id) not in seen:
            seen.add((retrieval.grant_id, retrieval.file_id))
            rows[retrieval.recipient_id].downloads.append((names.get(retrieval.file_id, "?"), retrieval.at))
    return list(rows.values())


def withdraw(db: Session, portal: Portal, transfer: Transfer, ip: str = "") -> None:
    """Unreachable at once: slots go first (see shredding); recipients are told after the commit."""
    notices = []
    for recipient in transfer.recipients:
        text, html = mails.render("withdrawn", transfer.language, transfer=transfer, site=portal.settings.site)
        with force_locale(transfer.language):
            subject = gettext("Withdrawn: %(subject)s", subject=transfer.subject)
        notices.append(mails.compose(portal.settings, recipient.email, subject, text, html))
    audit.record(db, "transfer_withdrawn", transfer_id=transfer.id, actor=transfer.sender_email, ip=ip)
    shredding.shred(db, portal, transfer, reason="withdrawn", ip=ip)
    dbmod.after_commit(db, lambda: portal.mailer.send(notices))

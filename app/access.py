"""Opening a transfer with a transaction ID and a password (or link secret).

Unknown ID, wrong password and expired transfer all end in the same
``AccessDenied`` after the same Argon2 work, and lockouts are counted per
typed ID whether it exists or not: nothing here tells an attacker which IDs
are real.

A successful unlock creates a download grant: the DEK wrapped under a fresh
secret that only the browser keeps. The database alone cannot open it and
the cookie alone holds no key; deleting the transfer deletes its grants.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import audit, keyslots, notices, ratelimit, shredding
from .clock import utcnow
from .crypto.keys import DecryptionError, unwrap, wrap
from .ids import normalize_access_id
from .models import AccessThrottle, DownloadGrant, Recipient, Transfer
from .portal import Portal


class AccessDenied(Exception):
    """Unknown, expired or wrong: deliberately one answer."""


class AccessLocked(Exception):
    def __init__(self, until: datetime) -> None:
        super().__init__(until)
        self.until = until


@dataclass(frozen=True)
class GrantTicket:
    """What the browser keeps: the grant id and the secret that opens it."""

    grant_id: str
    secret: str


def _throttle_key(typed_id: str) -> str:
    canonical = normalize_access_id(typed_id) or typed_id.strip().upper()
    return hashlib.sha256(canonical.encode()).hexdigest()


def _grant_aad(grant_id: str) -> bytes:
    return f"koerier/grant/v1/{grant_id}".encode()


def unlock(
    db: Session, portal: Portal, typed_id: str, secret: str, *, by_link: bool = False, ip: str = "",
    now: datetime | None = None,
) -> GrantTicket:
    now = now or utcnow()
    config = portal.settings.download
    per_ip = portal.settings.limits.failed_downloads_per_ip_per_hour
    if ip:
        ratelimit.check(db, "download-failures-ip", ip, per_ip, timedelta(hours=1), now)
    key = _throttle_key(typed_id)
    throttle = db.get(AccessThrottle, key) or AccessThrottle(key=key, failures=0, lockouts=0)
    if throttle.locked_until is not None and throttle.locked_until > now:
        raise AccessLocked(throttle.locked_until)

    recipient = _live_recipient(db, normalize_access_id(typed_id), now)
    with portal.argon2_gate.slot():
        dek = _open(recipient, secret, by_link, portal) if recipient is not None else None
        if dek is None and recipient is None and not by_link:
            keyslots.burn_time(keyslots.params_from(portal.settings.crypto))
    if dek is None:
        throttle.failures += 1
        throttle.updated_at = now
        db.add(throttle)
        audit.record(
            db, "download_failed", transfer_id=recipient.transfer_id if recipient else None,
            actor=recipient.email if recipient else "", ip=ip, now=now,
        )
        if throttle.failures >= config.max_attempts:
            _lock(db, portal, throttle, recipient, ip, now)
        if ip:
            ratelimit.hit(db, "download-failures-ip", ip, per_ip, timedelta(hours=1), now)
        raise AccessDenied()

    if throttle in db:
        db.delete(throttle)
    grant_id, grant_secret = str(uuid.uuid4()), os.urandom(32)
    db.add(
        DownloadGrant(
            id=grant_id,
            transfer_id=recipient.transfer_id,
            recipient_id=recipient.id,
            expires_at=now + timedelta(minutes=config.grant_minutes),
            wrapped_dek=wrap(grant_secret, dek, _grant_aad(grant_id)),
        )
    )
    audit.record(db, "download_unlocked", transfer_id=recipient.transfer_id, actor=recipient.email, ip=ip, now=now)
    return GrantTicket(grant_id, grant_secret.hex())


def _lock(
    db: Session, portal: Portal, throttle: AccessThrottle, recipient: Recipient | None, ip: str, now: datetime
) -> None:
    """Lock the typed ID; a repeat offender waits twice as long each time."""
    config = portal.settings.download
    minutes = min(config.lockout_minutes * 2**throttle.lockouts, config.max_lockout_hours * 60)
    throttle.failures = 0
    throttle.lockouts += 1
    throttle.locked_until = now + timedelta(minutes=minutes)
    transfer = recipient.transfer if recipient is not None else None
    audit.record(
        db, "download_locked", transfer_id=transfer.id if transfer else None,
        actor=recipient.email if recipient else "", ip=ip, now=now, minutes=minutes,
    )
    if transfer is None:
        return
    if config.delete_on_lockout:
        notices.lockout(portal, transfer, recipient.email, throttle.locked_until, deleted=True)
        shredding.shred(db, portal, transfer, reason="lockout", ip=ip)
    elif config.notify_sender_on_lockout:
        notices.lockout(portal, transfer, recipient.email, throttle.locked_until, deleted=False)


def _live_recipient(db: Session, access_id: str, now: datetime) -> Recipient | None:
    if not access_id:
        return None
    return db.scalar(
        select(Recipient).join(Transfer).where(Recipient.access_id == access_id, Transfer.expires_at > now)
    )


def _open(recipient: Recipient, secret: str, by_link: bool, portal: Portal) -> bytes | None:
    transfer = recipient.transfer
    if by_link:
        candidates = [s for s in transfer.slots if s.kind == "link" and s.recipient_id == recipient.id]
    else:
        candidates = [s for s in transfer.slots if s.kind == "password"]
        if not candidates:
            # No-password transfers open only through the link; spend the
            # same time as a password check so the answer looks the same.
            keyslots.burn_time(keyslots.params_from(portal.settings.crypto))
    for slot in candidates:
        data = keyslots.SlotData(slot.id, slot.kind, slot.kdf, slot.salt, slot.wrapped_dek)
        try:
            return keyslots.open_slot(data, transfer.id, secret)
        except DecryptionError:
            continue
    return None


@dataclass(frozen=True)
class Opened:
    grant: DownloadGrant
    transfer: Transfer
    recipient: Recipient
    dek: bytes


def open_grant(db: Session, ticket: GrantTicket | None, now: datetime | None = None) -> Opened | None:
    """The unlocked transfer behind a browser's ticket, or None."""
    if ticket is None:
        return None
    grant = db.get(DownloadGrant, ticket.grant_id)
    if grant is None or grant.expires_at <= (now or utcnow()) or grant.transfer.expires_at <= (now or utcnow()):
        return None
    try:
        dek = unwrap(bytes.fromhex(ticket.secret), grant.wrapped_dek, _grant_aad(grant.id))
    except (DecryptionError, ValueError):
        return None
    return Opened(grant, grant.transfer, grant.recipient, dek)

"""Opening a transfer with a transaction ID and a password (or link secret).

Unknown ID, wrong password and expired transfer all end in the same
``AccessDenied`` after the same Argon2 work, and an unknown ID is counted
and locked exactly like a real one: nothing here tells an attacker which IDs
are real.

Guesses count against the typed ID, and also against what they try to
open: all recipient IDs of a transfer share its one password slot, so they
share that slot's counter and lockout (a link slot belongs to one
recipient). The per-ID counter is the same for real and unknown IDs, and
stays when a transfer expires or is deleted, so an ID's lockout never
changes with what happens to its transfer. (Only someone who already holds
two real IDs of one transfer could see that they share a counter; nobody
finds a real ID by guessing.)

A guess is counted, in its own committed transaction, before its Argon2
run starts: parallel requests cannot all slip under the limit, and a request
that dies half-way cannot take its guess back.

A successful unlock creates a download grant: the DEK wrapped under a fresh
secret that only the browser keeps. The database alone cannot open it and
the cookie alone holds no key; deleting the transfer deletes its grants.
Whoever holds the password or a link may open it again and again, and each
opening is a download session with its own records; so the grants one
recipient ID opens are bounded per hour. They are counted only once the
secret proved right, so the count tells nothing to someone guessing.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from . import audit, keyslots, metrics, notices, password_policy, ratelimit, recipient_codes, shredding, throttle
from .clients import network
from .clock import utcnow
from .crypto.keys import DecryptionError, unwrap, wrap
from .ids import normalize_access_id
from .models import AccessThrottle, DownloadGrant, KeySlot, Recipient, Transfer
from .portal import Portal
from .throttle import AccessLocked, Lockout  # noqa: F401  (AccessLocked: the views catch it here)

IP_LIMIT = "download-failures-ip"
UNLOCK_LIMIT = "unlocks-recipient"
HOUR = timedelta(hours=1)


class AccessDenied(Exception):
    """Unknown, expired or wrong: deliberately one answer.

    ``attempts_left`` counts down the typed ID's own counter, which an
    unknown ID has exactly like a real one, and ``locked_until`` is set when
    this guess used that counter's last try. (The slot's counter, which only
    real IDs have, is never shown: it would tell them apart.)
    """

    def __init__(self, attempts_left: int, locked_until: datetime | None = None) -> None:
        super().__init__(attempts_left)
        self.attempts_left = attempts_left
        self.locked_until = locked_until


@dataclass(frozen=True)
class GrantTicket:
    """What the browser keeps: the grant id and the secret that opens it."""

    grant_id: str
    secret: str


def _throttle_keys(typed_id: str, slots: list[KeySlot]) -> list[str]:
    """The counters a guess goes to: the typed ID's, then its transfer's slot's."""
    subjects = [normalize_access_id(typed_id) or typed_id.strip().upper()]
    if slots:
        subjects.append("slot\x00" + min(slot.id for slot in slots))
    return [throttle.key(subject) for subject in subjects]


def _grant_aad(grant_id: str) -> bytes:
    return f"koerier/grant/v1/{grant_id}".encode()


@dataclass(frozen=True)
class _Guess:
    """A counted guess: what it may open, as plain values, and the lock it started."""

    recipient_id: int | None
    transfer_id: str
    slots: list[keyslots.SlotData]
    keys: list[str]
    lockout: Lockout | None
    attempts_left: int
    id_locked_until: datetime | None
    generated: bool  # the transfer's password was generated: typed loosely, it still counts


def unlock(
    db: Session, portal: Portal, typed_id: str, secret: str, *, by_link: bool = False, ip: str = "",
    now: datetime | None = None,
) -> GrantTicket | recipient_codes.ChallengeTicket:
    """Open a transfer, or raise AccessDenied, AccessLocked, RateLimited or Argon2Busy.

    A transfer whose recipients prove themselves with a one-time code too
    (``recipient_verification``) is not opened yet: the answer is a
    challenge, which ``pass_code`` turns into a grant once the code that
    went to this recipient's own address or phone comes back.

    Commits the guess counters on a connection of its own, so ``db`` must
    hold no uncommitted writes (SQLite has one writer at a time).
    """
    now = now or utcnow()
    # The Argon2 slot first: a request turned away as busy has guessed nothing.
    with portal.argon2_gate.slot():
        guess = _count_guess(db, portal, typed_id, by_link, ip, now)
        dek = _open(guess, secret)
        if not guess.slots and not by_link:
            # Nothing to try (unknown ID, or a transfer that opens only by
            # its link): spend what a password check costs, so the answer looks the same.
            keyslots.burn_time(keyslots.params_from(portal.settings.crypto))
    recipient = db.get(Recipient, guess.recipient_id) if guess.recipient_id is not None else None
    if dek is None or recipient is None:  # (a transfer deleted meanwhile is no longer available)
        metrics.PASSWORD_FAILURES.inc()
        audit.record(
            db, "download_failed", transfer_id=recipient.transfer_id if recipient else None,
            actor=recipient.email if recipient else "", ip=ip, now=now,
        )
        if guess.lockout is not None:
            _locked(db, portal, guess.lockout, recipient, ip, now)
        raise AccessDenied(guess.attempts_left, guess.id_locked_until)

    # The right secret: the back-off starts over, and this was no failure.
    db.execute(delete(AccessThrottle).where(AccessThrottle.key.in_(guess.keys)))
    if ip:
        ratelimit.refund(db, IP_LIMIT, network(ip), HOUR, now)
    allowed = portal.settings.limits.unlocks_per_recipient_per_hour
    ratelimit.hit(db, UNLOCK_LIMIT, recipient.access_id, allowed, HOUR, now)
    if recipient.transfer.recipient_verification != "none":
        return recipient_codes.open_challenge(db, portal, recipient, dek, now)
    return _grant(db, portal, recipient, dek, ip, now)


def pass_code(
    db: Session, portal: Portal, ticket: recipient_codes.ChallengeTicket | None, typed: str, ip: str = "",
    now: datetime | None = None,
) -> GrantTicket:
    """The download grant for a challenge whose code came back right; or
    recipient_codes.CodeRejected, or AccessLocked while the recipient's
    wrong codes keep it locked. Counts the try on a connection of its own
    first, as ``unlock`` does, so ``db`` must hold no uncommitted writes."""
    now = now or utcnow()
    opened = recipient_codes.check_code(db, portal, ticket, typed, ip, now)
    return _grant(db, portal, opened.recipient, opened.dek, ip, now)


def _grant(db: Session, portal: Portal, recipient: Recipient, dek: bytes, ip: str, now: datetime) -> GrantTicket:
    grant_id, grant_secret = str(uuid.uuid4()), os.urandom(32)
    db.add(
        DownloadGrant(
            id=grant_id,
            transfer_id=recipient.transfer_id,
            recipient_id=recipient.id,
            expires_at=now + timedelta(minutes=portal.settings.download.grant_minutes),
            wrapped_dek=wrap(grant_secret, dek, _grant_aad(grant_id)),
        )
    )
    audit.record(db, "download_unlocked", transfer_id=recipient.transfer_id, actor=recipient.email, ip=ip, now=now)
    return GrantTicket(grant_id, grant_secret.hex())


def _count_guess(db: Session, portal: Portal, typed_id: str, by_link: bool, ip: str, now: datetime) -> _Guess:
    """Find what a guess may open and count it, committed before it is judged.

    A separate short transaction rather than the request's: committed at
    once, so a parallel request sees it before its own Argon2 run starts and
    a request that crashes or times out cannot roll it back; and closed
    before the Argon2 run, so no request holds a database connection (let
    alone two) while it computes. Every counting statement is an atomic
    read-and-write (RETURNING), and the first write opens the transaction,
    so SQLite takes its write lock at once and waits for other writers
    rather than failing; rows are always taken in the same order (IP, ID,
    slot), so PostgreSQL's row locks cannot deadlock. A refused guess
    (locked, or too many from this IP) rolls back and counts nothing.
    """
    limits = portal.settings.limits
    with Session(db.get_bind()) as counting:
        recipient = _live_recipient(counting, normalize_access_id(typed_id), now)
        slots = _candidates(recipient, by_link) if recipient is not None else []
        keys = _throttle_keys(typed_id, slots)
        if ip:
            ratelimit.hit(counting, IP_LIMIT, network(ip), limits.failed_downloads_per_ip_per_hour, HOUR, now)
        counted = [_count(counting, portal, key, now) for key in keys]
        started = [lockout for _, lockout in counted if lockout is not None]
        guess = _Guess(
            recipient.id if recipient is not None else None,
            recipient.transfer_id if recipient is not None else "",
            [keyslots.SlotData(slot.id, slot.kind, slot.kdf, slot.salt, slot.wrapped_dek) for slot in slots],
            keys,
            max(started, key=lambda lockout: lockout.until, default=None),
            # The typed ID's counter comes first.
            counted[0][0],
            counted[0][1].until if counted[0][1] is not None else None,
            recipient is not None and recipient.transfer.password_mode == "generate",
        )
        counting.commit()
    return guess


def _count(db: Session, portal: Portal, key: str, now: datetime) -> tuple[int, Lockout | None]:
    """One more failure for ``key`` (app/throttle.py). The guess that uses
    the last try locks at once, before it is judged; if it turns out right,
    the unlock lifts the lock again."""
    config = portal.settings.download
    return throttle.count_failure(db, key, config.max_attempts, config.lockout_minutes, config.max_lockout_hours, now)


def _locked(db: Session, portal: Portal, lockout: Lockout, recipient: Recipient | None, ip: str, now: datetime) -> None:
    """Record a lockout, and tell the sender (or delete the transfer)."""
    metrics.LOCKOUTS.inc()
    config = portal.settings.download
    transfer = recipient.transfer if recipient is not None else None
    audit.record(
        db, "download_locked", transfer_id=transfer.id if transfer else None,
        actor=recipient.email if recipient else "", ip=ip, now=now, minutes=lockout.minutes,
    )
    if transfer is None:
        return
    if config.delete_on_lockout:
        notices.lockout(portal, transfer, recipient.email, lockout.until, deleted=True)
        shredding.shred(db, portal, transfer, reason="lockout", ip=ip)
    elif config.notify_sender_on_lockout:
        notices.lockout(portal, transfer, recipient.email, lockout.until, deleted=False)


def _live_recipient(db: Session, access_id: str, now: datetime) -> Recipient | None:
    if not access_id:
        return None
    return db.scalar(
        select(Recipient).join(Transfer).where(Recipient.access_id == access_id, Transfer.expires_at > now)
    )


def _candidates(recipient: Recipient, by_link: bool) -> list[KeySlot]:
    """The slots a guess for this recipient's ID may open."""
    if by_link:
        return [s for s in recipient.transfer.slots if s.kind == "link" and s.recipient_id == recipient.id]
    return [s for s in recipient.transfer.slots if s.kind == "password"]


def _open(guess: _Guess, secret: str) -> bytes | None:
    if guess.generated:
        secret = password_policy.as_generated(secret) or secret
    for slot in guess.slots:
        try:
            return keyslots.open_slot(slot, guess.transfer_id, secret)
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

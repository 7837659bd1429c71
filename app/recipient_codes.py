"""A recipient's second factor: a one-time code after the password or link.

With ``recipient_verification = "email"`` or ``"sms"`` a right transaction
ID and password (or link) do not open the transfer yet. They open a
*challenge*: the DEK wrapped under a fresh secret that only this browser
keeps, as a download grant holds it. A code then goes to the recipient
whose ID was typed, to their own address or to the mobile number the sender
entered for them, and only that code turns the challenge into a download
grant. So a password shared by several recipients, or a link or ID
forwarded to someone else, opens nothing without that recipient's mailbox
or phone. Everything before the code step is as without one: a wrong ID
and a wrong password still get one answer, and the step appears only after
both were right.

A code is bound to its challenge (in the HMAC, under a server key; the code
itself is never stored), so it works in the browser that asked for it and
nowhere else. Wrong codes count per recipient ID, whichever browser or code
they were typed for, in AccessThrottle rows counted before the code is
compared and committed at once (app/throttle.py): parallel guesses get no
more tries than ``recipient_codes.max_attempts``. The try that uses the
last one locks the ID's code step for ``recipient_codes.lockout_minutes``
(doubling) and voids its codes, so a new one is needed after the lock.
Codes sent per recipient are bounded per day (mail floods and SMS costs).

The mobile number is sealed under the transfer's DEK (docs/FORMAT.md), so
it is read only here, with the DEK the challenge holds.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask_babel import force_locale, gettext
from sqlalchemy import delete, update
from sqlalchemy.orm import Session

from . import audit, mails, notices, ratelimit, throttle
from .verification import code_digits
from .clock import utcnow
from .crypto.keys import DecryptionError, open_text, seal_text, unwrap, wrap
from .mailer import MailError
from .models import AccessThrottle, CodeChallenge, Recipient
from .portal import Portal
from .sms import SmsError, TextMessage, masked

DAY = timedelta(days=1)
SENT_LIMIT = "recipient-codes"


@dataclass(frozen=True)
class ChallengeTicket:
    """What the browser keeps: the challenge id and the secret that opens it."""

    challenge_id: str
    secret: str


class CodeRejected(Exception):
    """``reason``: "wrong" (with the tries left, and the lock it started),
    "expired", or "missing" (no code sent, or voided: ask for a new one)."""

    def __init__(self, reason: str, attempts_left: int = 0, locked_until: datetime | None = None) -> None:
        super().__init__(reason)
        self.reason, self.attempts_left, self.locked_until = reason, attempts_left, locked_until


class ChallengeLapsed(Exception):
    """The browser holds no live challenge: the password step again."""


class ResendTooSoon(Exception):
    def __init__(self, seconds: int) -> None:
        super().__init__(seconds)
        self.seconds = seconds


class CodeNotSent(Exception):
    """The mail server or SMS gateway did not take the code; nothing was counted."""


@dataclass(frozen=True)
class Opened:
    challenge: CodeChallenge
    recipient: Recipient
    dek: bytes


def _aad(challenge_id: str) -> bytes:
    return f"koerier/challenge/v1/{challenge_id}".encode()


def _digest(portal: Portal, challenge_id: str, code: str) -> bytes:
    return hmac.new(portal.recipient_code_key, f"{challenge_id}\x00{code}".encode(), hashlib.sha256).digest()


def _throttle_key(recipient: Recipient) -> str:
    return throttle.key("code\x00" + recipient.access_id)


def seal_mobile(dek: bytes, transfer_id: str, recipient_id: int, number: str) -> bytes:
    return seal_text(dek, "mobile", f"{transfer_id}/{recipient_id}", number)


def open_challenge(db: Session, portal: Portal, recipient: Recipient, dek: bytes, now: datetime) -> ChallengeTicket:
    """The right password (or link) for a transfer that wants a code too."""
    challenge_id, secret = str(uuid.uuid4()), os.urandom(32)
    db.add(
        CodeChallenge(
            id=challenge_id,
            transfer_id=recipient.transfer_id,
            recipient_id=recipient.id,
            wrapped_dek=wrap(secret, dek, _aad(challenge_id)),
            channel=recipient.transfer.recipient_verification,
            expires_at=now + timedelta(minutes=portal.settings.download.grant_minutes),
        )
    )
    return ChallengeTicket(challenge_id, secret.hex())


def find(db: Session, ticket: ChallengeTicket | None, now: datetime) -> Opened:
    """The challenge behind a browser's ticket, its DEK opened; or ChallengeLapsed."""
    challenge = db.get(CodeChallenge, ticket.challenge_id) if ticket is not None else None
    if challenge is None or challenge.expires_at <= now or challenge.recipient.transfer.expires_at <= now:
        raise ChallengeLapsed()
    try:
        dek = unwrap(bytes.fromhex(ticket.secret), challenge.wrapped_dek, _aad(challenge.id))
    except (DecryptionError, ValueError):
        raise ChallengeLapsed() from None
    return Opened(challenge, challenge.recipient, dek)


def _destination(opened: Opened) -> str:
    recipient = opened.recipient
    if opened.challenge.channel == "email":
        return recipient.email
    if recipient.mobile_ct is None:
        raise CodeNotSent("no mobile number")
    return open_text(opened.dek, "mobile", f"{recipient.transfer_id}/{recipient.id}", recipient.mobile_ct)


def shown_destination(opened: Opened) -> str:
    """Where the code goes, as the recipient may see it: "•••• 78", "a•••@gemeente.example"."""
    if opened.challenge.channel == "sms":
        return masked(_destination(opened)) if opened.recipient.mobile_ct is not None else ""
    local, _, domain = opened.recipient.email.rpartition("@")
    return f"{local[:1]}•••@{domain}"


def locked_until(db: Session, opened: Opened, now: datetime) -> datetime | None:
    return throttle.locked_until(db, _throttle_key(opened.recipient), now)


def send_code(db: Session, portal: Portal, opened: Opened, ip: str = "", now: datetime | None = None) -> None:
    """A fresh code to the recipient, replacing the challenge's last one.

    Raises throttle.AccessLocked, ResendTooSoon, ratelimit.RateLimited (the
    recipient's codes for the day) or CodeNotSent. The code is counted and
    kept on a connection of its own, committed before it goes out: a gateway
    may take up to its timeout, and meanwhile SQLite's one write lock would
    make every other request that writes wait longer than its busy wait.
    So ``db`` must hold no uncommitted writes. A code that did not go out is
    taken back, and counts against nothing.
    """
    now = now or utcnow()
    config, challenge, recipient = portal.settings.recipient_codes, opened.challenge, opened.recipient
    if (until := locked_until(db, opened, now)) is not None:
        raise throttle.AccessLocked(until)
    cooldown = timedelta(seconds=config.resend_cooldown_seconds)
    if challenge.code_sent_at is not None and (wait := challenge.code_sent_at + cooldown - now) > timedelta(0):
        raise ResendTooSoon(int(wait.total_seconds()) + 1)
    allowed = portal.settings.limits.recipient_codes_per_recipient_per_day
    ratelimit.check(db, SENT_LIMIT, recipient.access_id, allowed, DAY, now)
    code = "".join(secrets.choice("0123456789") for _ in range(config.code_length))
    destination = _destination(opened)
    before = {"code_hash": challenge.code_hash, "code_sent_at": challenge.code_sent_at,
              "code_expires_at": challenge.code_expires_at}
    after = {"code_hash": _digest(portal, challenge.id, code), "code_sent_at": now,
             "code_expires_at": now + timedelta(minutes=config.code_ttl_minutes)}
    with Session(db.get_bind()) as recording:
        ratelimit.hit(recording, SENT_LIMIT, recipient.access_id, allowed, DAY, now)
        if not _replace_code(recording, challenge.id, before, after):
            # Another request sent one meanwhile (a second click).
            raise ResendTooSoon(config.resend_cooldown_seconds)
        recording.commit()
    try:
        _deliver(portal, opened, destination, code)
    except CodeNotSent:
        with Session(db.get_bind()) as undoing:
            ratelimit.refund(undoing, SENT_LIMIT, recipient.access_id, DAY, now)
            _replace_code(undoing, challenge.id, after, before)
            undoing.commit()
        raise
    audit.record(
        db, "recipient_code_sent", transfer_id=recipient.transfer_id, actor=recipient.email, ip=ip, now=now,
        channel=challenge.channel,
    )


def _replace_code(db: Session, challenge_id: str, old: dict[str, object], new: dict[str, object]) -> bool:
    """The challenge's code ``new``, if its code is still ``old``."""
    sent_at = CodeChallenge.code_sent_at
    unchanged = sent_at.is_(None) if old["code_sent_at"] is None else sent_at == old["code_sent_at"]
    replaced = db.execute(
        update(CodeChallenge)
        .where(CodeChallenge.id == challenge_id, unchanged)
        .values(**new)
        .execution_options(synchronize_session=False)
    )
    return bool(replaced.rowcount)


def _deliver(portal: Portal, opened: Opened, destination: str, code: str) -> None:
    transfer, minutes = opened.recipient.transfer, portal.settings.recipient_codes.code_ttl_minutes
    site = portal.settings.site.name
    try:
        if opened.challenge.channel == "sms":
            assert portal.sms is not None  # the settings allow no "sms" without a gateway
            with force_locale(transfer.language):
                text = gettext(
                    "%(site)s: your code is %(code)s. It is valid for %(minutes)d minutes.",
                    site=site, code=code, minutes=minutes,
                )
            portal.sms.send(TextMessage(destination, text))
            return
        text, html = mails.render(
            "recipient_code", transfer.language, code=code, minutes=minutes, transfer=transfer, site=site
        )
        with force_locale(transfer.language):
            subject = gettext("Your code to open the files from %(name)s", name=transfer.sender_name)
        portal.mailer.send([mails.compose(portal.settings, destination, subject, text, html)])
    except (MailError, SmsError) as exc:
        raise CodeNotSent(str(exc)) from exc


def check_code(
    db: Session, portal: Portal, ticket: ChallengeTicket | None, typed: str, ip: str = "", now: datetime | None = None
) -> Opened:
    """The opened challenge if ``typed`` is its code, which is then used up;
    else ChallengeLapsed, CodeRejected or throttle.AccessLocked.

    The try is counted, on a connection of its own and committed, before the
    code is compared (see the module docstring)."""
    now = now or utcnow()
    opened = find(db, ticket, now)
    challenge, recipient = opened.challenge, opened.recipient
    if (until := locked_until(db, opened, now)) is not None:
        raise throttle.AccessLocked(until)
    if challenge.code_hash is None:
        raise CodeRejected("missing")
    if challenge.code_expires_at is None or now >= challenge.code_expires_at:
        raise CodeRejected("expired")
    config = portal.settings.recipient_codes
    key = _throttle_key(recipient)
    with Session(db.get_bind()) as counting:
        left, lockout = throttle.count_failure(
            counting, key, config.max_attempts, config.lockout_minutes, portal.settings.download.max_lockout_hours, now
        )
        if lockout is not None:
            # After the lock, only a new code will do.
            counting.execute(
                update(CodeChallenge).where(CodeChallenge.recipient_id == recipient.id).values(code_hash=None)
                .execution_options(synchronize_session=False)
            )
        counting.commit()
    typed = code_digits(typed)
    if not hmac.compare_digest(challenge.code_hash, _digest(portal, challenge.id, typed)):
        audit.record(
            db, "recipient_code_failed", transfer_id=recipient.transfer_id, actor=recipient.email, ip=ip, now=now,
            **({"locked_minutes": lockout.minutes} if lockout is not None else {}),
        )
        if lockout is not None and portal.settings.download.notify_sender_on_lockout:
            notices.lockout(portal, recipient.transfer, recipient.email, lockout.until, deleted=False, codes=True)
        raise CodeRejected("wrong", left, lockout.until if lockout is not None else None)
    # Right, even if it used the last try: the back-off starts over.
    db.execute(delete(AccessThrottle).where(AccessThrottle.key == key))
    db.delete(challenge)
    audit.record(
        db, "recipient_code_passed", transfer_id=recipient.transfer_id, actor=recipient.email, ip=ip, now=now,
        channel=challenge.channel,
    )
    return opened

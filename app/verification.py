"""Proving a sender owns an address: a mailed one-time code.

Codes come from the CSPRNG, are stored only as an HMAC under a server key,
are single use, expire, and allow a limited number of tries. Requesting a
new code replaces the old one, after a cooldown.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta

from flask_babel import force_locale, gettext
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from . import audit, mails, ratelimit
from .clock import utcnow
from .models import VerificationCode
from .portal import Portal


class ResendTooSoon(Exception):
    def __init__(self, seconds: int) -> None:
        super().__init__(seconds)
        self.seconds = seconds


class CodeRejected(Exception):
    """``reason`` is one of: wrong, expired, exhausted, missing."""

    def __init__(self, reason: str, attempts_left: int = 0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.attempts_left = attempts_left


def _digest(portal: Portal, email: str, code: str) -> bytes:
    return hmac.new(portal.code_key, f"{email}\x00{code}".encode(), hashlib.sha256).digest()


def _latest(db: Session, email: str) -> VerificationCode | None:
    return db.scalar(
        select(VerificationCode)
        .where(VerificationCode.email == email, VerificationCode.used_at.is_(None))
        .order_by(VerificationCode.created_at.desc(), VerificationCode.id.desc())
        .limit(1)
    )


def send_code(db: Session, portal: Portal, email: str, language: str, ip: str = "", now: datetime | None = None) -> None:
    """Mail a fresh code to ``email``.

    Raises ResendTooSoon, ratelimit.RateLimited (too many mails to this
    address or from this IP in the hour) or mailer.MailError.
    """
    now = now or utcnow()
    config = portal.settings.verification
    previous = _latest(db, email)
    if previous is not None:
        wait = previous.created_at + timedelta(seconds=config.resend_cooldown_seconds) - now
        if wait > timedelta(0):
            raise ResendTooSoon(int(wait.total_seconds()) + 1)
    limits, hour = portal.settings.limits, timedelta(hours=1)
    # Check both before counting either, so a refused request costs nothing.
    ratelimit.check(db, "verification-address", email, limits.verification_mails_per_address_per_hour, hour, now)
    if ip:
        ratelimit.check(db, "verification-ip", ip, limits.verification_mails_per_ip_per_hour, hour, now)
        ratelimit.hit(db, "verification-ip", ip, limits.verification_mails_per_ip_per_hour, hour, now)
    ratelimit.hit(db, "verification-address", email, limits.verification_mails_per_address_per_hour, hour, now)
    db.execute(delete(VerificationCode).where(VerificationCode.email == email, VerificationCode.used_at.is_(None)))
    code = "".join(secrets.choice("0123456789") for _ in range(config.code_length))
    db.add(
        VerificationCode(
            email=email,
            code_hash=_digest(portal, email, code),
            created_at=now,
            expires_at=now + timedelta(minutes=config.code_ttl_minutes),
        )
    )
    audit.record(db, "verification_sent", actor=email, ip=ip, now=now)
    text, html = mails.render(
        "verification", language, code=code, minutes=config.code_ttl_minutes, base_url=portal.settings.site.base_url
    )
    with force_locale(language):
        subject = gettext("Your verification code for %(site)s", site=portal.settings.site.name)
    # Sent before the request commits: if delivery fails the code row rolls back with it.
    portal.mailer.send([mails.compose(portal.settings, email, subject, text, html)])


def check_code(db: Session, portal: Portal, email: str, typed: str, ip: str = "", now: datetime | None = None) -> None:
    """Accept or raise CodeRejected. Every try counts, right or wrong."""
    now = now or utcnow()
    config = portal.settings.verification
    row = _latest(db, email)
    if row is None:
        raise CodeRejected("missing")
    if row.attempts >= config.max_attempts:
        raise CodeRejected("exhausted")
    if now >= row.expires_at:
        raise CodeRejected("expired")
    row.attempts += 1
    typed = "".join(ch for ch in typed if ch.isdigit())
    if not hmac.compare_digest(row.code_hash, _digest(portal, email, typed)):
        audit.record(db, "verification_failed", actor=email, ip=ip, now=now)
        left = config.max_attempts - row.attempts
        raise CodeRejected("wrong" if left > 0 else "exhausted", left)
    row.used_at = now
    audit.record(db, "verification_succeeded", actor=email, ip=ip, now=now)

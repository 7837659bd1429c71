"""Proving a sender owns an address: a mailed one-time code.

Codes come from the CSPRNG, are stored only as an HMAC under a server key,
are single use, expire, and allow a limited number of tries. Requesting a
new code replaces the old one, after a cooldown.

A code belongs to the browser that asked for it (a random id in its signed
session, bound into the HMAC and the lookup): wrong guesses from another
browser never touch it, and the hourly mail limit per address counts per
browser too. Typing somebody else's address therefore burns only the
typist's own tries and quota.

Fresh browsers cost nothing, so the codes mailed to one address from all
browsers together are bounded per client network and day: one network can
have only so much mail sent to an address. Nothing counts per address
alone, across networks: whoever used that up would lock the address's
owner out, on any network. Mail to one address from many networks is
bounded by each network's hourly limit.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import unicodedata
from datetime import datetime, timedelta

from flask_babel import force_locale, gettext
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from . import audit, mails, ratelimit
from .clients import network
from .clock import utcnow
from .models import VerificationCode
from .portal import Portal


def new_browser_id() -> str:
    """A random id for one browser's session: codes are bound to it."""
    return secrets.token_urlsafe(16)



def code_digits(typed: str) -> str:
    """The digits of a typed code, in ASCII: a keyboard set to Arabic types
    ٣ for 3, which would never match and spend a try. Spaces and dashes go."""
    return "".join(str(unicodedata.decimal(ch)) for ch in typed if ch.isdecimal())


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


def _digest(portal: Portal, email: str, browser: str, code: str) -> bytes:
    return hmac.new(portal.code_key, f"{email}\x00{browser}\x00{code}".encode(), hashlib.sha256).digest()


def _browser_key(browser: str) -> str:
    # The session's id itself stays in the (signed) cookie only.
    return hashlib.sha256(browser.encode()).hexdigest()


def _latest(db: Session, email: str, browser: str) -> VerificationCode | None:
    return db.scalar(
        select(VerificationCode)
        .where(
            VerificationCode.email == email,
            VerificationCode.browser == _browser_key(browser),
            VerificationCode.used_at.is_(None),
        )
        .order_by(VerificationCode.created_at.desc(), VerificationCode.id.desc())
        .limit(1)
    )


def send_code(
    db: Session, portal: Portal, email: str, browser: str, language: str, ip: str = "", now: datetime | None = None,
    purpose: str = "send",
) -> None:
    """Mail a fresh code for ``email`` to use in ``browser``: to send a
    transfer, or (``purpose="mine"``) to open My transfers.

    Raises ResendTooSoon, ratelimit.RateLimited (too many mails to this
    address for this browser in the hour, to this address from this client
    network or from all in the day, or from this network in the hour) or
    mailer.MailError.
    """
    now = now or utcnow()
    config = portal.settings.verification
    previous = _latest(db, email, browser)
    if previous is not None:
        wait = previous.created_at + timedelta(seconds=config.resend_cooldown_seconds) - now
        if wait > timedelta(0):
            raise ResendTooSoon(int(wait.total_seconds()) + 1)
    limits, hour, day, client = portal.settings.limits, timedelta(hours=1), timedelta(days=1), network(ip)
    counters = [
        ("verification-address-browser", f"{email}\x00{browser}", limits.verification_mails_per_address_per_hour, hour),
        ("verification-address-network", f"{email}\x00{client}", limits.verification_mails_per_address_per_ip_per_day, day),
        ("verification-address", email, limits.verification_mails_per_address_per_day, day),
    ]
    if ip:
        counters.append(("verification-ip", client, limits.verification_mails_per_ip_per_hour, hour))
    # Check all before counting any, so a refused request costs nothing.
    for limit, subject, allowed, window in counters:
        ratelimit.check(db, limit, subject, allowed, window, now)
    for limit, subject, allowed, window in counters:
        ratelimit.hit(db, limit, subject, allowed, window, now)
    db.execute(
        delete(VerificationCode).where(
            VerificationCode.email == email,
            VerificationCode.browser == _browser_key(browser),
            VerificationCode.used_at.is_(None),
        )
    )
    code = "".join(secrets.choice("0123456789") for _ in range(config.code_length))
    db.add(
        VerificationCode(
            email=email,
            browser=_browser_key(browser),
            code_hash=_digest(portal, email, browser, code),
            created_at=now,
            expires_at=now + timedelta(minutes=config.code_ttl_minutes),
        )
    )
    audit.record(db, "verification_sent", actor=email, ip=ip, now=now)
    text, html = mails.render(
        "verification", language, code=code, minutes=config.code_ttl_minutes, base_url=portal.settings.site.base_url,
        purpose=purpose,
    )
    with force_locale(language):
        subject = gettext("Your verification code for %(site)s", site=portal.settings.site.name)
    # Sent before the request commits: if delivery fails the code row rolls back with it.
    portal.mailer.send([mails.compose(portal.settings, email, subject, text, html)])


def check_code(
    db: Session, portal: Portal, email: str, browser: str, typed: str, ip: str = "", now: datetime | None = None
) -> None:
    """Accept or raise CodeRejected. Every try counts, right or wrong.

    The try is counted by one conditional UPDATE ... RETURNING before the
    code is compared, so parallel tries cannot all pass as the first one;
    an expired or used-up code is refused without a comparison.
    """
    now = now or utcnow()
    config = portal.settings.verification
    row = _latest(db, email, browser)
    if row is None:
        raise CodeRejected("missing")
    if now >= row.expires_at:
        raise CodeRejected("expired")
    attempts = db.scalar(
        update(VerificationCode)
        .where(
            VerificationCode.id == row.id,
            VerificationCode.used_at.is_(None),
            VerificationCode.attempts < config.max_attempts,
        )
        .values(attempts=VerificationCode.attempts + 1)
        .returning(VerificationCode.attempts)
        .execution_options(synchronize_session=False)
    )
    if attempts is None:
        raise CodeRejected("exhausted")
    typed = code_digits(typed)
    if not hmac.compare_digest(row.code_hash, _digest(portal, email, browser, typed)):
        audit.record(db, "verification_failed", actor=email, ip=ip, now=now)
        left = config.max_attempts - attempts
        raise CodeRejected("wrong" if left > 0 else "exhausted", left)
    row.used_at = now
    audit.record(db, "verification_succeeded", actor=email, ip=ip, now=now)

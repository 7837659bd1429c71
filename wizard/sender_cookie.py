"""Remembering a verified sender address in this browser.

With ``verification.remember_days = 0`` the verification lives in the
signed session, so it ends with it: after the idle or absolute timeout
(app/web.py), as everything else a forgotten browser still holds. With
more days, a signed persistent cookie of its own, as Cryptshare does;
``__Host-`` bound (Secure, whole site, this host only) in https mode.

"My transfers" asks more: a code entered in this browser's session within
``verification.my_transfers_minutes``. It lists whom the address sent what,
so a remembered address, whose proof may be days old, does not open it.
That proof lives in the signed session only, whose cookie is ``__Host-``
bound in https mode too, and ends with it.
"""

from __future__ import annotations

import time

from flask import Response, current_app, request, session
from itsdangerous import BadSignature, URLSafeTimedSerializer

COOKIE = "koerier_sender"
SESSION_KEY = "verified_sender"
MY_TRANSFERS_KEY = "my_transfers"


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="koerier/verified-sender")


def _remember_days() -> int:
    return current_app.config["KOERIER"].verification.remember_days


def _cookie_name() -> str:
    return ("__Host-" if current_app.config["KOERIER"].site.https else "") + COOKIE


def verified_email() -> str | None:
    if not _remember_days():
        return session.get(SESSION_KEY)
    raw = request.cookies.get(_cookie_name())
    if not raw:
        return None
    try:
        return str(_serializer().loads(raw, max_age=_remember_days() * 86400))
    except BadSignature:
        return None


def remember(response: Response, email: str) -> None:
    if not _remember_days():
        session[SESSION_KEY] = email
        return
    response.set_cookie(
        _cookie_name(),
        _serializer().dumps(email),
        max_age=_remember_days() * 86400,
        path="/",
        secure=current_app.config["KOERIER"].site.https,
        httponly=True,
        samesite="Lax",
    )


def open_my_transfers(email: str) -> None:
    """``email`` was proven just now, by a code entered in this browser."""
    session[MY_TRANSFERS_KEY] = {"email": email, "since": time.time()}


def _my_transfers() -> tuple[str, bool] | None:
    """The address this browser opened My transfers for, and whether that is still open."""
    held = session.get(MY_TRANSFERS_KEY)
    if not isinstance(held, dict):
        return None
    age = time.time() - float(held.get("since", 0))
    return str(held.get("email", "")), 0 <= age <= current_app.config["KOERIER"].verification.my_transfers_minutes * 60


def my_transfers_email() -> str | None:
    """The address whose transfers this browser may see and manage now, if any."""
    held = _my_transfers()
    if held is None or not held[1]:
        session.pop(MY_TRANSFERS_KEY, None)
        return None
    return held[0]


def my_transfers_lapsed() -> str | None:
    """The address whose My transfers this browser had open until its time ran out."""
    held = _my_transfers()
    return held[0] if held is not None and not held[1] else None


def close_my_transfers() -> None:
    session.pop(MY_TRANSFERS_KEY, None)

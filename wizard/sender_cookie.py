"""Remembering a verified sender address in this browser.

With ``verification.remember_days = 0`` the verification lives in the
signed session, so it ends with it: after the idle or absolute timeout
(app/web.py), as everything else a forgotten browser still holds. With
more days, a signed persistent cookie of its own, as Cryptshare does;
``__Host-`` bound (Secure, whole site, this host only) in https mode.
"""

from __future__ import annotations

from flask import Response, current_app, request, session
from itsdangerous import BadSignature, URLSafeTimedSerializer

COOKIE = "koerier_sender"
SESSION_KEY = "verified_sender"


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

"""Remembering a verified sender address in this browser.

A signed cookie, separate from the session so that its lifetime can follow
the operator's ``remember_days``: a browser-session cookie (checked for at
most a working day) when 0, a persistent one otherwise, as Cryptshare does.
"""

from __future__ import annotations

from flask import Response, current_app, request
from itsdangerous import BadSignature, URLSafeTimedSerializer

COOKIE = "koerier_sender"
SESSION_ONLY_SECONDS = 12 * 3600


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="koerier/verified-sender")


def _max_age() -> int:
    days = current_app.config["KOERIER"].verification.remember_days
    return days * 86400 if days else SESSION_ONLY_SECONDS


def verified_email() -> str | None:
    raw = request.cookies.get(COOKIE)
    if not raw:
        return None
    try:
        return str(_serializer().loads(raw, max_age=_max_age()))
    except BadSignature:
        return None


def remember(response: Response, email: str) -> None:
    days = current_app.config["KOERIER"].verification.remember_days
    response.set_cookie(
        COOKIE,
        _serializer().dumps(email),
        max_age=days * 86400 if days else None,
        secure=current_app.config["SESSION_COOKIE_SECURE"],
        httponly=True,
        samesite="Lax",
    )

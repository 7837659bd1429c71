"""Flask's signed session cookie, telling the operator when one does not verify.

A cookie signed with another key reads as an empty session, so the visitor
is sent back to the start, which is right for a forged or stale cookie. But
on a deployment of several nodes it is also what a node with a different
``KOERIER_SECRET_KEY`` does to every visitor the others served, and nothing
else would show it: the node is healthy, its forms just forget. So a bad
signature is logged, with what to check, at most once a minute per process
(anyone can send a bad cookie).
"""

from __future__ import annotations

import logging
import time

from flask import Flask, Request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from itsdangerous import BadSignature, SignatureExpired

from .secret_key import ENV_VAR

log = logging.getLogger(__name__)
WARN_EVERY_SECONDS = 60


class SessionCookie(SecureCookieSessionInterface):
    def __init__(self) -> None:
        self._warned_at = float("-inf")

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        serializer = self.get_signing_serializer(app)
        value = request.cookies.get(self.get_cookie_name(app))
        if serializer is None or not value:
            return super().open_session(app, request)
        try:
            return self.session_class(serializer.loads(value, max_age=int(app.permanent_session_lifetime.total_seconds())))
        except SignatureExpired:
            return self.session_class()
        except BadSignature:
            self._warn()
            return self.session_class()

    def _warn(self) -> None:
        now = time.monotonic()
        if now - self._warned_at >= WARN_EVERY_SECONDS:
            self._warned_at = now
            log.warning(
                "a session cookie does not verify with this node's secret key, so its visitor starts again. "
                "A forged or very old cookie does that; if it happens often on a portal of several nodes, "
                "check that every node has the same %s (or the same instance/secret_key)",
                ENV_VAR,
            )

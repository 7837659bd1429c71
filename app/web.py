"""Small helpers shared by the blueprints' views and templates."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import IO, TypeVar
from urllib.parse import urlsplit

import flask
from flask import Flask, Response, abort, current_app, request, session
from flask_babel import format_decimal, get_locale
from werkzeug.exceptions import BadRequest

from . import dates
from .portal import Portal
from .settings import Localized, Settings, localized
from .upload_limits import Leases


def portal() -> Portal:
    return current_app.extensions["koerier"]


def settings() -> Settings:
    return current_app.config["KOERIER"]


def upload_leases() -> Leases:
    return current_app.extensions["koerier.upload_leases"]


def client_ip() -> str:
    return request.remote_addr or ""


def human_size(size: int) -> str:
    """Sizes as people read them (decimal units, as file managers show)."""
    value = float(size)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{format_decimal(value, '#,##0' if unit == 'B' else '#,##0.0')} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def limit_body(max_bytes: int) -> None:
    """Let this request's body be up to ``max_bytes``, read as a stream.

    One byte of slack: Werkzeug answers 413 to a read after an exact
    maximum, even when the body simply ended there.
    """
    request.max_content_length = max_bytes + 1


View = TypeVar("View", bound=Callable[..., object])


def streams_body(view: View) -> View:
    """Mark a view that reads its request body itself, as a stream.

    Werkzeug's form parser would read such a body whole, before the view
    could refuse it, under the view's raised size limit and without its
    lease or read timeout: nothing in these views may ask for
    ``request.form`` or ``request.files`` (build forms with
    ``formdata=None``). ``Request`` fails any that does.
    """
    view.streams_body = True  # type: ignore[attr-defined]
    return view


class Request(flask.Request):
    """Werkzeug's parser, kept to what the portal's forms need."""

    def _load_form_data(self) -> None:
        view = current_app.view_functions.get(self.endpoint) if self.endpoint and current_app else None
        if getattr(view, "streams_body", False):
            raise RuntimeError(f"{self.endpoint} reads its body as a stream; its forms must not parse it")
        super()._load_form_data()

    def _get_file_stream(
        self, total_content_length: int | None, content_type: str | None, filename: str | None = None,
        content_length: int | None = None,
    ) -> IO[bytes]:
        # Werkzeug would spool a file part beyond 500 KB into a temporary
        # file: plaintext on disk. Files reach the portal only through the
        # upload views, which encrypt them as they stream in; no other form
        # takes one.
        raise BadRequest("this form takes no files")


CSP = (
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)


def _in_current_language(value: Localized) -> str:
    """An operator's text in the page's or mail's language (see ``force_locale``)."""
    return localized(value, str(get_locale()))


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def init_app(app: Flask) -> None:
    app.request_class = Request

    @app.context_processor
    def _globals() -> dict[str, object]:
        return {"site": settings().site, "current_language": str(get_locale())}

    app.jinja_env.filters["filesize"] = human_size
    app.jinja_env.filters["localized"] = _in_current_language
    app.jinja_env.filters["date"] = dates.day
    app.jinja_env.filters["datetime"] = dates.moment
    app.jinja_env.filters["fromiso"] = datetime.fromisoformat

    @app.before_request
    def _same_origin_only() -> None:
        # Defence in depth beside the CSRF token: browsers tell us where a
        # form post comes from, and a post from another site is refused.
        if request.method in ("GET", "HEAD", "OPTIONS"):
            return
        if request.headers.get("Sec-Fetch-Site") == "cross-site":
            abort(403)
        origin = request.headers.get("Origin")
        if origin and origin != "null" and origin.rstrip("/") != _origin(settings().site.base_url):
            abort(403)

    @app.before_request
    def _session_timeouts() -> None:
        # Both limits bound how long a forgotten browser on a shared
        # computer keeps a draft or an opened transfer reachable.
        site, now = settings().site, time.time()
        started, seen = session.get("_started"), session.get("_seen")
        if started is not None and (
            now - started > site.session_absolute_hours * 3600 or now - (seen or started) > site.session_idle_minutes * 60
        ):
            session.clear()
        if session and (seen is None or now - seen > 30):
            session.setdefault("_started", now)
            session["_seen"] = now

    @app.after_request
    def _security_headers(response: Response) -> Response:
        headers = response.headers
        # Nothing inline, nothing from elsewhere, no framing (clickjacking).
        headers.setdefault("Content-Security-Policy", CSP)
        headers.setdefault("X-Content-Type-Options", "nosniff")
        # Download links carry transaction IDs and link secrets.
        headers.setdefault("Referrer-Policy", "no-referrer")
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=()")
        # Pages show confidential data; no browser or proxy may keep them.
        if request.endpoint != "static":
            headers.setdefault("Cache-Control", "no-store")
        if settings().site.https:
            headers.setdefault("Strict-Transport-Security", "max-age=63072000")
        return response

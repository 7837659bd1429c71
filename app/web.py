"""Small helpers shared by the blueprints' views and templates."""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import IO, TypeVar
from urllib.parse import urlsplit

import flask
from flask import Flask, Response, abort, current_app, flash, render_template, request, session
from flask_babel import format_decimal, get_locale, gettext
from werkzeug.exceptions import BadRequest

from . import dates
from .portal import Portal
from .settings import Localized, Settings, localized
from .upload_limits import Leases

log = logging.getLogger(__name__)


def portal() -> Portal:
    return current_app.extensions["koerier"]


def settings() -> Settings:
    return current_app.config["KOERIER"]


def upload_leases() -> Leases:
    return current_app.extensions["koerier.upload_leases"]


def client_ip() -> str:
    return request.remote_addr or ""


def human_size(size: int) -> str:
    """Sizes as people read them (decimal units, as file managers show), as
    the files page's script writes them (formatBytes in static/js/upload.js)."""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
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


def reads_body_as_stream() -> bool:
    """Whether this request's view is marked ``streams_body``."""
    view = current_app.view_functions.get(request.endpoint) if request.endpoint else None
    return getattr(view, "streams_body", False)


class Request(flask.Request):
    """Werkzeug's parser, kept to what the portal's forms need."""

    def _load_form_data(self) -> None:
        if current_app and reads_body_as_stream():
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


def _on_loopback(origin: str) -> bool:
    try:
        host = urlsplit(origin).hostname or ""
    except ValueError:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def portal_origin() -> str:
    """Where browsers should open the portal: the origin of ``site.base_url``."""
    return _origin(settings().site.base_url)


def origin_accepted(origin: str) -> bool:
    """Whether a browser page at ``origin`` may post to this portal.

    The configured address, exactly. A portal whose address is on loopback
    runs on the operator's own machine (the built-in default says
    localhost:5000, ``flask run`` prints 127.0.0.1, ``--port`` changes
    either): it also takes any loopback origin, but only the one the request
    itself was sent to, so a page on another loopback port cannot post here,
    and a public name that resolves to 127.0.0.1 (DNS rebinding) is no
    loopback origin.
    """
    configured = portal_origin()
    if origin.rstrip("/") == configured:
        return True
    return _on_loopback(configured) and _on_loopback(origin) and origin == f"{request.scheme}://{request.host}"


def _wrong_address(origin: str) -> Response:
    """A post from a page opened at another address than the portal's: say
    which address to use, to the visitor and, naming the setting, to the operator."""
    log.warning(
        "refused %s %s from a page at %s: this portal's address is %s (site.base_url); "
        "open the portal there, or set site.base_url to the address browsers use",
        # The route, not the path: a path may hold a secret (an upload request's token).
        request.method, request.url_rule.rule if request.url_rule else "(no route)", origin, portal_origin(),
    )
    message = gettext(
        "This page was opened at %(here)s, but this portal's address is %(address)s. "
        "Please open the portal at %(address)s and try again.",
        here=origin, address=portal_origin(),
    )
    if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        page = render_template("error.html", code=403, message=message, link=portal_origin() + request.path)
        return Response(page, status=403)
    # Scripts (uploads, the password check) show the answer's own words.
    response = flask.jsonify(error=message)
    response.status_code = 403
    return response


# What a session's end takes away: a draft, an opened transfer. Only a
# session holding one of them is worth a warning, or an explanation after.
SESSION_HOLDS = ("draft", "grant")


def session_seconds_left() -> dict[str, int] | None:
    """How long this browser's session lasts without another request
    ("idle") and at most ("absolute"), when it holds something to lose; the
    page's script warns before it ends."""
    if not any(key in session for key in SESSION_HOLDS):
        return None
    site, now = settings().site, time.time()
    started, seen = session.get("_started", now), session.get("_seen", now)
    absolute = max(0, int(started + site.session_absolute_hours * 3600 - now))
    return {"idle": min(absolute, max(0, int(seen + site.session_idle_minutes * 60 - now))), "absolute": absolute}


def _end_session(idle: bool) -> None:
    """Forget everything but the language, and say why on the next page shown."""
    held = any(key in session for key in SESSION_HOLDS)
    language = session.get("lang")
    session.clear()
    if language is not None:
        session["lang"] = language
    if not held:
        return
    site = settings().site
    if idle:
        flash(gettext(
            "Your session ended after %(minutes)d minutes without activity, so that nobody else at this computer "
            "can continue it. Please start again.", minutes=site.session_idle_minutes,
        ), "error")
    else:
        flash(gettext(
            "Your session ended: for your safety a session lasts at most %(hours)d hours. Please start again.",
            hours=site.session_absolute_hours,
        ), "error")


def init_app(app: Flask) -> None:
    app.request_class = Request
    # For base.html: the address scripts compare the page's with, and the session's time left.
    app.jinja_env.globals.update(portal_origin=portal_origin, session_seconds_left=session_seconds_left)

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
        if origin and origin != "null" and not origin_accepted(origin):
            abort(_wrong_address(origin))

    @app.before_request
    def _session_timeouts() -> None:
        # Both limits bound how long a forgotten browser on a shared
        # computer keeps a draft or an opened transfer reachable.
        site, now = settings().site, time.time()
        started, seen = session.get("_started"), session.get("_seen")
        idle = started is not None and now - (seen or started) > site.session_idle_minutes * 60
        if started is not None and (idle or now - started > site.session_absolute_hours * 3600):
            _end_session(idle)
        if session and (seen is None or now - seen > 30):
            session.setdefault("_started", now)
            session["_seen"] = now

    app.after_request(secured)


def secured(response: Response) -> Response:
    """``response`` with the headers every answer of the portal carries
    (those it set itself stay)."""
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

"""Error pages in the visitor's language instead of Werkzeug's English ones."""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify, render_template, request
from flask_babel import gettext
from flask_babel import lazy_gettext as _l
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException

from . import dates
from .clock import utcnow
from .db import failure_cause
from .ratelimit import RateLimited
from .storage import StorageUnavailable
from .web import reads_body_as_stream, secured

log = logging.getLogger(__name__)

MESSAGES = {
    400: _l("The request could not be understood."),
    403: _l("You are not allowed to open this page."),
    404: _l("This page does not exist."),
    405: _l("This page cannot be used this way."),
    413: _l("The upload is larger than this portal accepts."),
    429: _l("Too many attempts. Please try again later."),
    500: _l("Something went wrong on our side. Nothing of what you sent was lost; please try again."),
}
DATABASE_UNAVAILABLE = _l("The portal is temporarily unavailable. Please try again in a moment.")
# A database that restarts, or fails over to a standby, is usually back within this.
DATABASE_RETRY_SECONDS = 10
STORE_UNAVAILABLE = _l("The portal cannot store files right now. Please try again in a moment.")
# What a visitor is told to wait when the file store is out of reach.
STORE_RETRY_SECONDS = 15


def database_unavailable(error: OperationalError) -> Response:
    """The database cannot be reached (or is locked): the cause in the log,
    once and without a traceback, and "try again in a moment" to the visitor."""
    log.error("the database (storage.database_url) is unavailable: %s", failure_cause(error))
    return unavailable(DATABASE_UNAVAILABLE, DATABASE_RETRY_SECONDS)


def unavailable(message: object, retry_after: int) -> Response:
    """503 for something the portal depends on and cannot reach right now.

    A browser gets the portal's page; a form post is offered again from it
    as it was typed, so nothing typed is lost. Scripts (the uploads, the
    password check) get the same words as JSON, and tus clients the header
    they expect. Secured here, not only by the hook: a commit that fails
    replaces the response after the hook has run (app/db.py).
    """
    headers = {"Retry-After": str(retry_after)}
    if "text/html" not in (value for value, _quality in request.accept_mimetypes):
        if "Tus-Resumable" in request.headers:
            headers["Tus-Resumable"] = "1.0.0"
        response = jsonify(error=str(message))
        response.status_code = 503
        response.headers.update(headers)
        return secured(response)
    page = render_template("unavailable.html", message=message, resend=_typed_fields())
    return secured(Response(page, status=503, headers=headers))


# The names our forms give passwords, access keys and one-time codes.
SECRET_FIELDS = frozenset({"password", "password_repeat", "key", "code"})


def _typed_fields() -> list[tuple[str, str]] | None:
    """The fields of a form post, to post again; None for anything else.

    Uploads stream their bodies and are not kept (the files page's script
    resumes them, and keeps the message in the tab). Secrets are left out,
    as a refused post leaves them out (app/refused_posts.py): written into
    the page they would sit in its source, for a shared computer's session
    restore or an extension to read; the form asks for them again.
    """
    if request.method != "POST" or request.mimetype != "application/x-www-form-urlencoded" or reads_body_as_stream():
        return None
    try:
        return [(name, value) for name, value in request.form.items(multi=True) if name not in SECRET_FIELDS]
    except HTTPException:  # a body too large to be a form of ours
        return None


def init_app(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def _csrf(error: CSRFError):  # type: ignore[no-untyped-def]
        message = _l("Your session has expired or the form was sent twice. Please go back and try again.")
        return render_template("error.html", code=400, message=message), 400

    @app.errorhandler(RateLimited)
    def _limited(error: RateLimited):  # type: ignore[no-untyped-def]
        message = gettext("Too many attempts. Please try again after %(time)s.", time=dates.moment(error.retry_at))
        retry = max(1, int((error.retry_at - utcnow()).total_seconds()))
        return render_template("error.html", code=429, message=message), 429, {"Retry-After": str(retry)}

    app.register_error_handler(OperationalError, database_unavailable)

    @app.errorhandler(StorageUnavailable)
    def _store_unavailable(error: StorageUnavailable) -> Response:
        log.warning("the file store is unavailable: %s", error)
        return unavailable(STORE_UNAVAILABLE, STORE_RETRY_SECONDS)

    @app.errorhandler(HTTPException)
    def _http(error: HTTPException):  # type: ignore[no-untyped-def]
        code = error.code or 500
        return render_template("error.html", code=code, message=MESSAGES.get(code, error.name)), code

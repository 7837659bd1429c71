"""Error pages in the visitor's language instead of Werkzeug's English ones."""

from __future__ import annotations

import logging

from flask import Flask, render_template
from flask_babel import gettext
from flask_babel import lazy_gettext as _l
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from . import dates
from .clock import utcnow
from .ratelimit import RateLimited
from .storage import StorageUnavailable

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
STORE_UNAVAILABLE = _l("The portal cannot store files right now. Please try again in a moment.")
# What a visitor is told to wait when the file store is out of reach.
STORE_RETRY_SECONDS = 15


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

    @app.errorhandler(StorageUnavailable)
    def _store_unavailable(error: StorageUnavailable):  # type: ignore[no-untyped-def]
        log.warning("the file store is unavailable: %s", error)
        page = render_template("error.html", code=503, message=STORE_UNAVAILABLE)
        return page, 503, {"Retry-After": str(STORE_RETRY_SECONDS)}

    @app.errorhandler(HTTPException)
    def _http(error: HTTPException):  # type: ignore[no-untyped-def]
        code = error.code or 500
        return render_template("error.html", code=code, message=MESSAGES.get(code, error.name)), code

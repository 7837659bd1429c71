"""Languages: the "EN | NL" switch, remembered in the session; otherwise the
browser's Accept-Language decides on the first visit."""

from __future__ import annotations

import unicodedata
from pathlib import Path
from urllib.parse import urlsplit

from flask import Blueprint, Flask, abort, current_app, redirect, request, session
from flask_babel import Babel

from .settings import LANGUAGES

babel = Babel()
bp = Blueprint("i18n", __name__)


def select_locale() -> str:
    chosen = session.get("lang")
    if chosen in LANGUAGES:
        return chosen
    return request.accept_languages.best_match(LANGUAGES) or current_app.config["KOERIER"].site.default_language


@bp.get("/lang/<code>")
def switch(code: str):  # type: ignore[no-untyped-def]
    if code not in LANGUAGES:
        abort(404)
    session["lang"] = code
    return redirect(local_path(request.args.get("next", "/")))


def local_path(target: str) -> str:
    """``target`` if it is a path on this site, else "/".

    Browsers drop tabs and line breaks from a URL and read a backslash as a
    slash, so "/%09/evil.example" (a tab) or "/\\evil.example" lead to another
    host: a target holding any such character, or naming a scheme or a host,
    is refused.
    """
    if any(ch.isspace() or ch == "\\" or unicodedata.category(ch)[0] in "CZ" for ch in target):
        return "/"
    try:
        parts = urlsplit(target)
    except ValueError:  # e.g. an unclosed "[" where a host would be
        return "/"
    if parts.scheme or parts.netloc or not parts.path.startswith("/") or parts.path.startswith("//"):
        return "/"
    return target


def init_app(app: Flask) -> None:
    settings = app.config["KOERIER"]
    app.config["BABEL_DEFAULT_LOCALE"] = settings.site.default_language
    app.config["BABEL_DEFAULT_TIMEZONE"] = settings.site.timezone
    # Flask-Babel resolves relative paths against app/, not the project root.
    app.config["BABEL_TRANSLATION_DIRECTORIES"] = str(Path(app.root_path).parent / "translations")
    babel.init_app(app, locale_selector=select_locale)
    app.register_blueprint(bp)

"""Languages: the "EN | NL" switch, remembered in the session; otherwise the
browser's Accept-Language decides on the first visit."""

from __future__ import annotations

from pathlib import Path

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
    target = request.args.get("next", "/")
    # Only local paths: a crafted link must not turn this into an open redirect.
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        target = "/"
    return redirect(target)


def init_app(app: Flask) -> None:
    settings = app.config["KOERIER"]
    app.config["BABEL_DEFAULT_LOCALE"] = settings.site.default_language
    app.config["BABEL_DEFAULT_TIMEZONE"] = settings.site.timezone
    # Flask-Babel resolves relative paths against app/, not the project root.
    app.config["BABEL_TRANSLATION_DIRECTORIES"] = str(Path(app.root_path).parent / "translations")
    babel.init_app(app, locale_selector=select_locale)
    app.register_blueprint(bp)

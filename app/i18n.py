"""Languages: the choice in the header, remembered in the session; otherwise
the browser's Accept-Language decides on the first visit, among the languages
the operator offers (``site.languages``)."""

from __future__ import annotations

import unicodedata
from pathlib import Path
from urllib.parse import urlsplit

from flask import Blueprint, Flask, abort, current_app, redirect, request, session
from flask_babel import Babel, get_locale
from wtforms import SelectChoice


babel = Babel()
bp = Blueprint("i18n", __name__)

# Each language in its own name, so that a reader finds theirs whatever the
# page's language is.
NAMES = {
    "nl": "Nederlands", "en": "English", "de": "Deutsch", "pl": "Polski", "tr": "Türkçe", "uk": "Українська",
    "ar": "العربية",
}
RIGHT_TO_LEFT = frozenset({"ar"})


def direction(language: str) -> str:
    """The value of an HTML ``dir`` attribute for text in ``language``."""
    return "rtl" if language in RIGHT_TO_LEFT else "ltr"


def left_to_right(text: str) -> str:
    """``text`` kept in its own order within a right-to-left sentence: an
    Arabic page would show the phone number "0592 123456" as "123456 0592".
    Unicode's isolate marks, not markup, so that plain-text mails keep it too."""
    return f"\u2066{text}\u2069"


def offered() -> list[str]:
    return current_app.config["KOERIER"].site.languages


def choices() -> list[SelectChoice]:
    """The offered languages for a select, each option in its own language."""
    return [SelectChoice(code, NAMES[code], {"lang": code, "dir": direction(code)}) for code in offered()]


def select_locale() -> str:
    chosen = session.get("lang")
    if chosen in offered():
        return chosen
    return request.accept_languages.best_match(offered()) or current_app.config["KOERIER"].site.default_language


@bp.get("/lang/<code>")
def switch(code: str):  # type: ignore[no-untyped-def]
    if code not in offered():
        abort(404)
    session["lang"] = code
    return redirect(local_path(request.args.get("next", "/")))


def switch_posted() -> bool:
    """Whether this post is a wizard step's form sent with one of the
    header's languages (``?lang=<code>``, base.html). The language is
    switched; the view then carries what was typed back to its page
    (refused_posts.carry) instead of taking it as the step's answer, so that
    switching loses nothing, without a script."""
    code = request.args.get("lang")
    if request.method != "POST" or code not in offered():
        return False
    session["lang"] = code
    return True


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

    @app.context_processor
    def _languages() -> dict[str, object]:
        # get_locale() follows force_locale, so mails get their own language's direction.
        rtl = direction(str(get_locale())) == "rtl"
        return {
            "text_direction": "rtl" if rtl else "ltr",
            # Mail clients ignore logical CSS properties (padding-inline-end ...): mails name the physical side.
            "inline_start": "right" if rtl else "left",
            "inline_end": "left" if rtl else "right",
            "offered_languages": offered(),
        }

    app.jinja_env.filters["language_name"] = lambda code: NAMES.get(code, code)
    app.jinja_env.filters["direction"] = direction
    app.jinja_env.filters["ltr"] = left_to_right

"""Pages of the portal itself: the start page, help, and the operator's branding."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, abort, jsonify, render_template, send_from_directory

from .settings import LOGO_TYPES
from .web import portal, session_seconds_left, settings

bp = Blueprint("site", __name__)


@bp.get("/")
def index() -> str:
    return render_template("index.html")


@bp.get("/help")
def help_page() -> str:
    return render_template("help.html")


@bp.get("/session")
def session_left() -> Response:
    """The page script's "Stay signed in": like every request, this one
    extends the session (app/web.py); it answers how long the session now
    lasts. A GET, as harmless as loading any page: another site can neither
    send it with the session's cookie (SameSite) nor read its answer."""
    return jsonify(session_seconds_left() or {"idle": 0, "absolute": 0})


@bp.get("/theme.css")
def theme() -> Response:
    # A stylesheet rather than a style attribute: the CSP allows no inline styles.
    accent = settings().site.accent_color
    css = f":root {{ --accent: {accent}; --accent-dark: color-mix(in srgb, {accent} 80%, black); }}\n"
    return Response(css, mimetype="text/css", headers={"Cache-Control": "public, max-age=300"})


@bp.get("/branding/logo")
def logo() -> Response:
    name = settings().site.logo
    if not name:
        abort(404)
    response = send_from_directory(portal().instance_path, name, mimetype=LOGO_TYPES[Path(name).suffix.lower()])
    response.headers["Cache-Control"] = "public, max-age=300"
    # An SVG opened on its own must not run scripts in our origin.
    response.headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'; sandbox"
    return response

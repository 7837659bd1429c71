"""Small helpers shared by the blueprints' views and templates."""

from __future__ import annotations

from datetime import datetime

from urllib.parse import urlsplit

from flask import Flask, Response, abort, current_app, request
from flask_babel import format_date, format_datetime, format_decimal, get_locale

from .portal import Portal
from .settings import Settings


def portal() -> Portal:
    return current_app.extensions["koerier"]


def settings() -> Settings:
    return current_app.config["KOERIER"]


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


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def init_app(app: Flask) -> None:
    @app.context_processor
    def _globals() -> dict[str, object]:
        return {"site": settings().site, "current_language": str(get_locale())}

    app.jinja_env.filters["filesize"] = human_size
    app.jinja_env.filters["date"] = format_date
    app.jinja_env.filters["datetime"] = format_datetime
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

    @app.after_request
    def _no_store(response: Response) -> Response:
        # Pages show confidential data; no browser or proxy may keep them.
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        return response

"""Koerier: a self-hosted portal for exchanging confidential files."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from flask import Flask
from flask_wtf.csrf import CSRFProtect
from werkzeug.middleware.proxy_fix import ProxyFix

from . import (
    cli, db, errors, health, i18n, metrics, private_files, scheduler, site_pages, socket_body, upload_limits, web,
)
from .mailer import make_mailer
from .argon2_gate import Argon2Gate
from .portal import Portal
from .sms import make_gateway
from .secret_key import load_or_create
from .session_cookie import SessionCookie
from .settings import ConfigError, load_settings
from .storage import make_store

csrf = CSRFProtect()
log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def create_app(test_config: dict[str, Any] | None = None, instance_path: str | os.PathLike[str] | None = None) -> Flask:
    """Build the app: defaults, then instance/config.toml, then ``test_config``.

    ``test_config`` has the shape of the TOML file (sections of keys).
    """
    instance = Path(instance_path or os.environ.get("KOERIER_INSTANCE_PATH") or PROJECT_ROOT / "instance").resolve()
    private_files.make_dir(instance)
    app = Flask(__name__, instance_path=str(instance))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    settings = load_settings(_config_file(instance), test_config)
    app.config["KOERIER"] = settings
    app.session_interface = SessionCookie()
    app.config.update(
        SECRET_KEY=load_or_create(instance),
        SESSION_COOKIE_NAME="__Host-koerier" if settings.site.https else "koerier",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.site.https,
        PREFERRED_URL_SCHEME="https" if settings.site.https else "http",
        # Ordinary forms are small; the upload view raises its own limit.
        MAX_CONTENT_LENGTH=1024 * 1024,
        # A sender may take long over a step; the token lives as long as the draft.
        WTF_CSRF_TIME_LIMIT=settings.transfer.draft_ttl_hours * 3600,
        # The strict check wants a Referer, which our no-referrer policy
        # suppresses; app/web.py checks Origin and Sec-Fetch-Site instead.
        WTF_CSRF_SSL_STRICT=False,
    )

    portal = Portal(
        settings=settings,
        store=make_store(settings.storage, instance),
        mailer=make_mailer(settings.mail, instance),
        instance_path=instance,
        server_secret=app.config["SECRET_KEY"].encode(),
        argon2_gate=Argon2Gate(settings.crypto.argon2_max_concurrent, settings.crypto.argon2_wait_seconds),
        sms=make_gateway(settings, instance),
    )
    app.extensions["koerier"] = portal
    app.wsgi_app = socket_body.middleware(app.wsgi_app)  # type: ignore[method-assign]
    if settings.site.trusted_proxies:
        # Only then is X-Forwarded-For believed, and only the proxies' own hops.
        n = settings.site.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)  # type: ignore[method-assign]

    storage = settings.storage
    db.init_app(
        app,
        storage.database_url or f"sqlite:///{instance / 'koerier.sqlite3'}",
        auto_upgrade=storage.auto_upgrade == "always" or (storage.auto_upgrade == "embedded" and not storage.database_url),
    )
    upload_limits.init_app(app)
    csrf.init_app(app)
    i18n.init_app(app)
    web.init_app(app)
    errors.init_app(app)
    cli.init_app(app)
    scheduler.init_app(app)
    health.init_app(app)
    app.register_blueprint(metrics.bp)

    from download import bp as download_bp
    from mine import bp as mine_bp
    from wizard import bp as wizard_bp
    from wizard import portals_bp

    app.register_blueprint(site_pages.bp)
    app.register_blueprint(wizard_bp)
    app.register_blueprint(portals_bp)
    app.register_blueprint(download_bp)
    app.register_blueprint(mine_bp)
    return app


def _config_file(instance: Path) -> Path | None:
    explicit = os.environ.get("KOERIER_CONFIG")
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"KOERIER_CONFIG: no such file {path}")
        return path
    default = instance / "config.toml"
    if default.is_file():
        return default
    log.warning("no %s; running on built-in defaults (see instance/config.example.toml)", default)
    return None

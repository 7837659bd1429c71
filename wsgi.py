"""WSGI entry point: ``gunicorn wsgi:app`` or ``flask --app wsgi run``."""

import sys

from app import create_app
from app.schema import SchemaError
from app.settings import ConfigError

try:
    app = create_app()
except ConfigError as exc:
    # One clear line naming the key, not a traceback, and a failing exit.
    print(f"Configuration error: {exc}", file=sys.stderr)
    raise SystemExit(2) from None
except SchemaError as exc:
    print(f"Database schema: {exc}", file=sys.stderr)
    raise SystemExit(2) from None

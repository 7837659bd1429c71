"""WSGI entry point: ``gunicorn wsgi:app`` or ``flask --app wsgi run``."""

import sys

from sqlalchemy.exc import OperationalError

from app import create_app
from app.db import failure_cause
from app.schema import SchemaError
from app.settings import ConfigError

# gunicorn stops when a worker exits with this code ("failed to boot"), where
# any other would have it restart its workers for ever; flask's CLI exits with it too.
BOOT_FAILED = 3

try:
    app = create_app()
except ConfigError as exc:
    # One clear line naming the key, not a traceback, and a failing exit.
    print(f"Configuration error: {exc}", file=sys.stderr)
    raise SystemExit(BOOT_FAILED) from None
except SchemaError as exc:
    print(f"Database schema: {exc}", file=sys.stderr)
    raise SystemExit(BOOT_FAILED) from None
except OperationalError as exc:
    # Start-up reads the schema's revision: the database must answer.
    print(f"Database: storage.database_url: {failure_cause(exc)}", file=sys.stderr)
    raise SystemExit(BOOT_FAILED) from None

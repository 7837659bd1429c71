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
LOCKED = "database is locked"

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
    cause = failure_cause(exc)
    print(f"Database: storage.database_url: {cause}", file=sys.stderr)
    # A lock held past the busy wait (another process's long write) passes:
    # any other code has gunicorn start the worker again, not stop the server.
    raise SystemExit(1 if cause == LOCKED else BOOT_FAILED) from None

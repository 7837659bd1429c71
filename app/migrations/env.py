"""Alembic's environment for the portal: our engine, our tables, our lock."""

from alembic import context
from flask import current_app

from app import models  # noqa: F401  (registers the tables)
from app.db import Base
from app.schema import locked

engine = current_app.extensions["koerier.engine"]
options = current_app.extensions["migrate"].configure_args


def run_migrations_offline() -> None:
    """`flask db upgrade --sql`: the SQL to hand to a database administrator."""
    context.configure(url=engine.url, target_metadata=Base.metadata, literal_binds=True, **options)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    # The revision is read under the lock, so a worker that waited for
    # another's upgrade finds nothing left to do.
    with locked(engine) as connection:
        context.configure(connection=connection, target_metadata=Base.metadata, **options)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()

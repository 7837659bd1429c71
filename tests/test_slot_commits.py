"""Upload slots and space claims commit without waiting for the disk
(app/db.py); everything else, and whatever the operator's database URL
sets, stays as it is."""

from __future__ import annotations

from sqlalchemy import text

from .conftest import Setup


def _settings(app, maker: str, *names: str) -> list[str]:  # type: ignore[no-untyped-def]
    with app.extensions[maker]() as session:
        if session.get_bind().dialect.name == "sqlite":
            return [str(session.execute(text(f"PRAGMA {name}")).scalar()) for name in names]
        return [session.execute(text(f"SHOW {name}")).scalar() for name in names]


def _source(app, maker: str) -> str:  # type: ignore[no-untyped-def]
    with app.extensions[maker]() as session:
        return session.execute(text("SELECT source FROM pg_settings WHERE name = 'synchronous_commit'")).scalar()


def test_slot_commits_return_early_and_keep_the_urls_options(make_app, setup: Setup) -> None:
    if setup.database_url:
        # An operator's own session settings in the URL (libpq's "options").
        app = make_app({"storage": {"database_url": setup.database_url + "?options=-c%20statement_timeout%3D12345"}})
        assert _settings(app, "koerier.sessionmaker", "statement_timeout") == ["12345ms"]
        assert _settings(app, "koerier.ephemeral_sessionmaker", "synchronous_commit", "statement_timeout") == ["off", "12345ms"]
        # Set by the slots' engine itself (the tests' server turns it off for
        # every session already; the durable engine leaves it as configured).
        assert _source(app, "koerier.ephemeral_sessionmaker") == "session"
        assert _source(app, "koerier.sessionmaker") != "session"
    else:
        app = make_app()
        # 2 = FULL, 1 = NORMAL (in WAL mode: synced at checkpoints, not at each commit).
        assert _settings(app, "koerier.sessionmaker", "synchronous", "journal_mode") == ["2", "wal"]
        assert _settings(app, "koerier.ephemeral_sessionmaker", "synchronous", "journal_mode") == ["1", "wal"]

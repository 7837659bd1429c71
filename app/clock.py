"""One source of "now", always timezone-aware UTC.

Services take an optional ``now`` argument so tests and the scheduler can
inject a clock without patching anything.
"""

from __future__ import annotations

from datetime import datetime, timezone


def utcnow() -> datetime:
    return datetime.now(timezone.utc)

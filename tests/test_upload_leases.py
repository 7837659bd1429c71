"""Upload leases: the slots of a dead worker free themselves, a live one keeps its own."""

from __future__ import annotations

import time
from datetime import timedelta

from app.clock import utcnow
from app.db import new_session
from app.upload_limits import LEASE_TTL, Leases, claim_leases, release_leases, renew_leases


def test_a_dead_workers_leases_free_themselves(app) -> None:
    caps = [("subject", 1)]
    start = utcnow()
    with app.app_context(), new_session(app) as session:
        assert claim_leases(session, "a" * 32, "draft-a", caps, start)
        assert not claim_leases(session, "b" * 32, "draft-b", caps, start + LEASE_TTL / 2)
        # Nobody renewed the lease: its worker was killed.
        assert claim_leases(session, "b" * 32, "draft-b", caps, start + LEASE_TTL)
        renew_leases(session, ["b" * 32], start + LEASE_TTL * 1.5)
        assert not claim_leases(session, "c" * 32, "draft-c", caps, start + LEASE_TTL * 2)
        release_leases(session, "b" * 32)
        assert claim_leases(session, "c" * 32, "draft-c", caps, start + LEASE_TTL * 2)


def test_a_running_upload_keeps_its_lease(app) -> None:
    leases = Leases(lambda: new_session(app), lambda: new_session(app), ttl=timedelta(seconds=2))
    with app.app_context(), leases.hold("draft", [("subject", 1)]):
        time.sleep(3)  # longer than the lease lasts unrenewed
        with new_session(app) as session:
            assert not claim_leases(session, "x" * 32, "other", [("subject", 1)])

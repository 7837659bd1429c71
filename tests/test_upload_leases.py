"""Upload leases: the slots of a dead worker free themselves, a live one keeps its own."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from sqlalchemy import func, select

from app.clock import utcnow
from app.db import new_session
from app.upload_limits import LEASE_TTL, Leases, UploadLease, claim_leases, release_leases, renew_leases


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


def test_a_claim_takes_a_slot_under_every_cap_or_none(app) -> None:
    """The first slots of all caps are asked for in one statement; a cap whose
    first slot is taken gives its next, and one that is full leaves no slot
    taken under the others."""
    def held() -> list[tuple[str, int, str]]:
        return sorted(connection.execute(select(UploadLease.key, UploadLease.slot, UploadLease.holder)).tuples())

    with app.app_context(), app.extensions["koerier.ephemeral_engine"].connect() as connection:
        assert claim_leases(connection, "a" * 32, "draft-a", [("sender", 2), ("network", 1)])
        assert not claim_leases(connection, "b" * 32, "draft-b", [("sender", 2), ("network", 1)])
        assert held() == [("network", 0, "a" * 32), ("sender", 0, "a" * 32)]
        assert claim_leases(connection, "c" * 32, "draft-c", [("other", 1), ("sender", 2)])
        assert held() == [("network", 0, "a" * 32), ("other", 0, "c" * 32), ("sender", 0, "a" * 32), ("sender", 1, "c" * 32)]
        assert not claim_leases(connection, "d" * 32, "draft-d", [("sender", 2), ("elsewhere", 1)])
        release_leases(connection, "a" * 32)
        assert held() == [("other", 0, "c" * 32), ("sender", 1, "c" * 32)]


def test_a_running_upload_keeps_its_lease(app) -> None:
    leases = Leases(app.extensions["koerier.ephemeral_engine"], lambda: new_session(app), ttl=timedelta(seconds=2))
    with app.app_context(), leases.hold("draft", [("subject", 1)]):
        time.sleep(3)  # longer than the lease lasts unrenewed
        with new_session(app) as session:
            assert not claim_leases(session, "x" * 32, "other", [("subject", 1)])
    # The renewer ends at its next turn, now that nothing is held; until then
    # it may be renewing in a session that the test's teardown would close under it.
    for thread in threading.enumerate():
        if thread.name == "koerier-upload-leases":
            thread.join(timeout=10)


def test_parallel_claims_never_pass_the_cap(app) -> None:
    """Twenty requests claim at the same moment, each in its own session:
    exactly ``capacity`` get a slot, on SQLite and on PostgreSQL; and as many
    again once the first holders' worker died and nobody renewed them."""
    capacity, count = 3, 20
    caps = [("sender", capacity), ("network", count)]
    start = utcnow()

    def burst(now):  # type: ignore[no-untyped-def]
        ready = threading.Barrier(count)

        def claim(i: int) -> bool:
            ready.wait()
            # On a connection, as an upload claims (its engine pools fewer than twenty).
            with app.extensions["koerier.ephemeral_engine"].connect() as connection:
                return claim_leases(connection, f"{i:032x}", f"draft-{i}", caps, now)

        with ThreadPoolExecutor(count) as pool:
            return list(pool.map(claim, range(count)))

    assert burst(start).count(True) == capacity
    assert burst(start + LEASE_TTL).count(True) == capacity
    with new_session(app) as session:
        assert session.scalar(select(func.count()).select_from(UploadLease).where(UploadLease.key == "sender")) == capacity

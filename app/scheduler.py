"""Running the clean-up job inside the app, on exactly one worker.

Every worker starts an APScheduler job; at each tick it tries to take the
database lease, and only the holder runs the job. Operators who prefer cron
set ``retention.scheduler = false`` and run ``flask purge``.
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import uuid
from datetime import timedelta

from apscheduler.schedulers.background import BackgroundScheduler
from flask import Flask

from . import lease, purge
from .db import new_session

log = logging.getLogger(__name__)
LEASE = "purge"


def holder_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def tick(app: Flask, holder: str) -> purge.Report | None:
    """One scheduled run: the job's report, or None when another process holds the lease."""
    interval = app.config["KOERIER"].retention.interval_minutes
    with app.app_context():
        with new_session(app) as db:
            # Three intervals: a holder that misses two ticks is presumed dead.
            if not lease.acquire(db, LEASE, holder, timedelta(minutes=3 * interval)):
                return None
        report = purge.run(lambda: new_session(app), app.extensions["koerier"])
    log.info("clean-up: %s", "; ".join(report.lines()))
    return report


def init_app(app: Flask) -> None:
    retention = app.config["KOERIER"].retention
    if not retention.scheduler:
        return
    holder = holder_name()
    scheduler = BackgroundScheduler(daemon=True)
    scheduler.add_job(
        tick, "interval", minutes=retention.interval_minutes, args=[app, holder], id="purge",
        max_instances=1, coalesce=True,
    )
    scheduler.start()
    app.extensions["koerier.scheduler"] = scheduler
    atexit.register(lambda: scheduler.shutdown(wait=False))

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
import threading
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


def tick(app: Flask, holder: str, release: bool = False) -> purge.Report | None:
    """One scheduled run: the job's report, or None when another process holds the lease.

    The in-app scheduler keeps the lease and renews it at every tick, so the
    job stays on one worker. A run from cron (``release``) gives it back when
    it ends, or every next run within the lease's time would find it taken;
    one that crashes keeps it until it runs out.
    """
    interval = app.config["KOERIER"].retention.interval_minutes
    with app.app_context():
        with new_session(app) as db:
            # Three intervals: a holder that misses two ticks is presumed dead.
            if not lease.acquire(db, LEASE, holder, timedelta(minutes=3 * interval)):
                return None
        try:
            report = purge.run(lambda: new_session(app), app.extensions["koerier"])
        finally:
            if release:
                with new_session(app) as db:
                    lease.release(db, LEASE, holder)
    log.info("clean-up: %s", "; ".join(report.lines()))
    return report


def init_app(app: Flask) -> None:
    retention = app.config["KOERIER"].retention
    if not retention.scheduler:
        return
    # Started by the first request rather than here: CLI commands then never
    # run it, and under a pre-forking server each worker gets its own thread
    # instead of a master's thread that did not survive the fork.
    lock = threading.Lock()

    @app.before_request
    def start_scheduler_once() -> None:
        if "koerier.scheduler" in app.extensions:
            return
        with lock:
            if "koerier.scheduler" not in app.extensions:
                app.extensions["koerier.scheduler"] = start(app)


def start(app: Flask) -> BackgroundScheduler:
    interval = app.config["KOERIER"].retention.interval_minutes
    scheduler = BackgroundScheduler(daemon=True)
    scheduler.add_job(
        tick, "interval", minutes=interval, args=[app, holder_name()], id="purge",
        max_instances=1, coalesce=True,
    )
    scheduler.start()
    atexit.register(lambda: scheduler.running and scheduler.shutdown(wait=False))
    return scheduler

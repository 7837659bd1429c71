"""gunicorn settings for Koerier: ``gunicorn -c deploy/gunicorn.conf.py wsgi:app``.

Flags on the command line (or in GUNICORN_CMD_ARGS) win over these.
docs/DEPLOY.md explains each choice.
"""

import os
import shutil
import tempfile

# Behind nginx on the same machine; see docs/DEPLOY.md for the proxy.
bind = "127.0.0.1:8000"
workers = 4
# Threads (the gthread worker) let a worker serve pages while others stream
# large files; keep them well above limits.concurrent_uploads_per_sender and _per_ip.
threads = 8
# With threads this is how long a worker may go without telling the master
# it is alive, not a limit on a request: long uploads and downloads pass.
timeout = 300

# Metrics (app/metrics.py): every worker writes its counts into files in this
# folder and /metrics adds up those of all, so any worker answers the totals.
# It must be set before a worker imports the app, which is why it is set here.
_OWN_PREFIX = "koerier-metrics-"
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix=_OWN_PREFIX)
_metrics_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"]
os.makedirs(_metrics_dir, mode=0o700, exist_ok=True)


def on_starting(server):  # type: ignore[no-untyped-def]
    # Counts of an earlier run would be added to this run's: begin empty.
    for entry in os.scandir(_metrics_dir):
        if entry.name.endswith(".db"):
            os.unlink(entry.path)


def child_exit(server, worker):  # type: ignore[no-untyped-def]
    # What prometheus_client asks of every multiprocess setup: a worker that
    # is gone drops out of live gauges (its counters stay in the totals).
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):  # type: ignore[no-untyped-def]
    # A folder made above, recognised by its place and name: a reload (HUP)
    # reads this file again and finds the variable already set.
    folder = os.path.abspath(_metrics_dir)
    made_here = os.path.dirname(folder) == os.path.abspath(tempfile.gettempdir())
    if made_here and os.path.basename(folder).startswith(_OWN_PREFIX):
        shutil.rmtree(folder, ignore_errors=True)

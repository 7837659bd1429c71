"""Prometheus metrics: what the portal did, counted where the services do it.

The services call the counters below directly (one line each), so the CLI
and the scheduler count too. Under gunicorn every worker is a process of
its own: with ``PROMETHEUS_MULTIPROC_DIR`` set before the app is imported
(deploy/gunicorn.conf.py sets it), each process writes its values into a
file there, and /metrics adds up the files of all of them, those of workers
that have since been replaced included, so any worker answers the same
totals. Without it (``flask run``, tests) the values live in this process.

/metrics answers only ``metrics.allow`` (app/settings.py), on the portal's
own port, where any worker can answer. It names no transfer, address or
file, only counts; the registry is our own, so it does not list the Python
version either.

prometheus-client is a dependency of the portal itself, not an extra: the
services count wherever they run, with or without /metrics enabled, and it
is small, pure Python, with no dependencies of its own.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

from flask import Blueprint, Response, abort, request
from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics, multiprocess
from prometheus_client.exposition import choose_encoder


# prometheus_client chose where values live when it was imported; so do we.
MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
REGISTRY = CollectorRegistry()
# A series per counter with its creation time is noise here (and multiprocess
# mode has none): the same output either way.
disable_created_metrics()

TRANSFERS_STARTED = Counter(
    "koerier_transfers_started", "Transfers started (committed).", registry=REGISTRY,
)
UPLOAD_BYTES = Counter(
    "koerier_upload_bytes", "File bytes received and stored, by way of upload (form or tus).", ["via"],
    registry=REGISTRY,
)
DOWNLOADS = Counter(
    "koerier_downloads",
    "Retrievals as the audit trail records them (once per download session, file and kind), by kind: "
    "download, preview, or archive (Download all, one per archive).",
    ["kind"], registry=REGISTRY,
)
DOWNLOAD_BYTES = Counter(
    "koerier_download_bytes", "File bytes sent to recipients (decrypted), ranges and archives included.",
    registry=REGISTRY,
)
PASSWORD_FAILURES = Counter(
    "koerier_password_failures", "Unlock attempts refused: wrong password or access key, or unknown transaction ID.",
    registry=REGISTRY,
)
LOCKOUTS = Counter(
    "koerier_lockouts", "Lockouts started by too many wrong passwords.", registry=REGISTRY,
)
MAILS_FAILED = Counter(
    "koerier_mails_failed", "Mails the SMTP server did not take.", registry=REGISTRY,
)
SCANS = Counter(
    "koerier_scans",
    "Uploaded files the virus scanner judged, by result: clean, infected (a detection), too_large (longer "
    "than clamd's StreamMaxLength), incomplete (content past clamd's limits, e.g. MaxScanSize or MaxRecursion, "
    "or encrypted) or failed (no verdict: clamd down, timed out, an error).",
    ["result"], registry=REGISTRY,
)
SMS_FAILED = Counter(
    "koerier_sms_failed", "SMS messages the gateway did not take, or did not answer for in time.", registry=REGISTRY,
)
# Every series from the start: a rate needs a value from before the first event.
for _via in ("form", "tus"):
    UPLOAD_BYTES.labels(_via)
for _kind in ("download", "preview", "archive"):
    DOWNLOADS.labels(_kind)
for _result in ("clean", "infected", "too_large", "incomplete", "failed"):
    SCANS.labels(_result)
PURGE_DURATION = Histogram(
    "koerier_purge_duration_seconds", "Runs of the clean-up job and how long each took; _count is the runs.",
    buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900), registry=REGISTRY,
)

bp = Blueprint("metrics", __name__)


def counted_download(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """``chunks`` as they are sent, counted: an interrupted download counts what went out."""
    for chunk in chunks:
        DOWNLOAD_BYTES.inc(len(chunk))
        yield chunk


def _registry() -> CollectorRegistry:
    if not MULTIPROCESS:
        return REGISTRY
    # Read from the files of every process, as the library's docs prescribe.
    merged = CollectorRegistry()
    multiprocess.MultiProcessCollector(merged)
    return merged


@bp.get("/metrics")
def metrics() -> Response:
    # Here, not above: the services that count import this module, and app.web imports them.
    from .web import client_ip, settings

    config = settings().metrics
    # Not found, rather than forbidden: nothing tells others it is there.
    if not config.enabled or not config.allows(client_ip()):
        abort(404)
    # The text format a scraper asks for (Prometheus's own, or OpenMetrics).
    encode, content_type = choose_encoder(request.headers.get("Accept"))
    return Response(encode(_registry()), content_type=content_type)

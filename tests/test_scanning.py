"""Malware scanning with a real clamd: a file joins the draft only once it is found clean.

The daemon knows one signature, the EICAR test file's (tests/clamd.py).
Each test walks the wizard to the files step and posts the form as a
browser does; what is left in the store, the audit trail and the
metrics are looked at from outside.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import zipfile
from concurrent.futures import ThreadPoolExecutor
from io import BytesIO
from typing import Any
from urllib.parse import urljoin

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from app import db
from app.crypto.stream import SEGMENT_SIZE
from app.models import Event, StoredFile
from app.scanning import CLEAN, INFECTED, TOO_LARGE, UNAVAILABLE, Clamd
from app.settings import ConfigError, Scan, load_settings

from . import blobs
from .clamd import EICAR, FOUND_AS, STREAM_MAX_BYTES, ClamdServer
from .live import ROOT, free_port, random_file
from .test_large_transfers import upload_by_tus
from .test_tus import TusSender
from .walker import PASSWORD, Person, Recipient, Sender, text_of

CLEAN_PDF = b"%PDF-1.4 jaarverslag\n" * 2000
MESSAGE = "Zie bijlage, met vriendelijke groet"
WHAT_TO_DO = "Do not open it, and have the device it came from checked for viruses."


def _config(clamd: ClamdServer, **scan: Any) -> dict[str, Any]:
    return {"scan": clamd.config(**scan), "metrics": {"enabled": True}}


def at_files_step(app, mailbox) -> Sender:  # type: ignore[no-untyped-def]
    sender = Sender(app, mailbox)
    sender.personal()
    sender.verify()
    assert sender.recipients("anna@gemeente.example").status_code == 302
    return sender


def _stored(app) -> list[StoredFile]:  # type: ignore[no-untyped-def]
    with app.app_context():
        return list(db.session().scalars(select(StoredFile)))


def _events(app, kind: str) -> list[Event]:  # type: ignore[no-untyped-def]
    with app.app_context():
        return list(db.session().scalars(select(Event).where(Event.kind == kind).order_by(Event.id)))


def _scans(app) -> dict[str, float]:  # type: ignore[no-untyped-def]
    exposition = app.test_client().get("/metrics").get_data(as_text=True)
    return {
        sample.labels["result"]: sample.value
        for family in text_string_to_metric_families(exposition) if family.name == "koerier_scans"
        for sample in family.samples
    }


# The service, straight at the daemon.


@pytest.mark.parametrize("way", ["tcp", "unix"])
def test_clamd_judges_a_stream_over_tcp_and_a_unix_socket(clamd: ClamdServer, way: str) -> None:
    address = clamd.tcp_address if way == "tcp" else clamd.unix_address
    scanner = Clamd(Scan(backend="clamd", clamd_address=address))
    scanner.ping()
    found = scanner.scan([EICAR[:10], b"", memoryview(EICAR[10:])])
    assert (found.result, found.detail) == (INFECTED, FOUND_AS)
    assert scanner.scan(iter([CLEAN_PDF] * 10)).result == CLEAN
    assert scanner.scan([]).result == CLEAN
    # Beyond the daemon's StreamMaxLength: no verdict on what it did not read.
    assert scanner.scan([b"\0" * 1024 * 1024] * (STREAM_MAX_BYTES // (1024 * 1024) + 1)).result == TOO_LARGE


def test_a_scanner_that_is_down_or_silent_gives_no_verdict(own_clamd: ClamdServer) -> None:
    own_clamd.halt()
    for address in (own_clamd.tcp_address, own_clamd.unix_address):
        verdict = Clamd(Scan(backend="clamd", clamd_address=address)).scan([EICAR])
        assert verdict.result == UNAVAILABLE and address in verdict.detail
    # A listener that takes the connection and never answers.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        verdict = Clamd(Scan(backend="clamd", clamd_address=f"tcp://127.0.0.1:{port}", timeout_seconds=1)).scan([EICAR])
    assert verdict.result == UNAVAILABLE


@pytest.mark.parametrize(
    ("scan", "rules", "key"),
    [
        ({"backend": "clamav"}, [], "scan.backend"),
        ({"clamd_address": "127.0.0.1:3310"}, [], "scan.clamd_address"),
        ({"clamd_address": "unix://run/clamd.ctl"}, [], "scan.clamd_address"),
        ({"on_unavailable": "ignore"}, [], "scan.on_unavailable"),
        ({"timeout_seconds": 0}, [], "scan.timeout_seconds"),
        ({"max_stream_bytes": 0}, [], "scan.max_stream_bytes"),
        ({}, [{"name": "x", "scan": "sometimes"}], "rules[0].scan"),
        ({"backend": "off"}, [{"name": "x", "scan": "required"}], "rules[0].scan"),
    ],
)
def test_a_wrong_scan_setting_names_its_key(scan: dict[str, Any], rules: list[dict[str, Any]], key: str) -> None:
    with pytest.raises(ConfigError, match=f"^{re.escape(key)}:"):
        load_settings(None, {"scan": scan, "rules": rules})


# The form upload.


@blobs.BOTH_STORES
def test_eicar_is_refused_with_its_signature_and_leaves_nothing(make_app, mailbox, clamd: ClamdServer) -> None:
    app = make_app(_config(clamd))
    sender = at_files_step(app, mailbox)
    before = _scans(app)
    page = sender.files([("verslag.pdf", CLEAN_PDF), ("factuur.pdf", EICAR)], message=MESSAGE)
    assert page.status_code == 422
    text = text_of(page)
    # What happened, and what to do (walk: it said only the first).
    assert (f"“factuur.pdf” was not added: the virus scanner found malware in it ({FOUND_AS}). {WHAT_TO_DO}") in text
    assert MESSAGE in text
    # The clean file is in; of the infected one neither a row nor its ciphertext stays.
    assert "verslag.pdf" in text
    (kept,) = _stored(app)
    assert blobs.names(app) == [kept.blob_key]
    (event,) = _events(app, "file_infected")
    assert event.actor == sender.person.email and event.data == {"signature": FOUND_AS, "size": len(EICAR)}
    assert "factuur" not in str(event.data)
    moved = {k: v - before.get(k, 0) for k, v in _scans(app).items()}
    assert moved == {"clean": 1, "infected": 1, "too_large": 0, "incomplete": 0, "failed": 0}


def test_the_sender_reads_the_detection_in_their_language(make_app, mailbox, clamd: ClamdServer) -> None:
    app = make_app(_config(clamd))
    sender = at_files_step(app, mailbox)
    sender.get("/lang/nl?next=/send/files")
    page = sender.files([("factuur.pdf", EICAR)], message=MESSAGE)
    assert f"“factuur.pdf” is niet toegevoegd: de virusscanner heeft er malware in gevonden ({FOUND_AS})." in text_of(page)


def test_a_clean_file_goes_through_to_the_recipient(make_app, mailbox, clamd: ClamdServer) -> None:
    app = make_app(_config(clamd))
    sender = Sender(app, mailbox)
    sender.send(files=[("verslag.pdf", CLEAN_PDF)])
    assert len(_stored(app)) == 1
    assert not _events(app, "file_infected") and not _events(app, "file_unscanned")


def test_with_clamd_down_the_file_is_refused_and_the_message_kept(make_app, mailbox, own_clamd: ClamdServer) -> None:
    app = make_app(_config(own_clamd))
    sender = at_files_step(app, mailbox)
    own_clamd.halt()
    before = _scans(app)
    page = sender.files([("verslag.pdf", CLEAN_PDF)], message=MESSAGE)
    assert page.status_code == 503 and page.headers["Retry-After"]
    text = text_of(page)
    assert "“verslag.pdf” was not added: the virus scanner is not available. Please try again later." in text
    assert MESSAGE in text
    assert _stored(app) == [] and blobs.names(app) == []
    (event,) = _events(app, "file_unscanned")
    assert event.data == {"reason": "unavailable", "accepted": False, "size": len(CLEAN_PDF)}
    assert _scans(app)["failed"] - before["failed"] == 1
    # Back up: the same file goes in.
    own_clamd.resume()
    assert sender.files([("verslag.pdf", CLEAN_PDF)], message=MESSAGE, action="add").status_code == 302
    assert len(_stored(app)) == 1


def test_with_clamd_down_and_accept_the_file_is_kept_and_audited_unscanned(make_app, mailbox, own_clamd: ClamdServer) -> None:
    app = make_app(_config(own_clamd, on_unavailable="accept"))
    sender = at_files_step(app, mailbox)
    own_clamd.halt()
    assert sender.files([("verslag.pdf", CLEAN_PDF)], message=MESSAGE).status_code == 302
    assert len(_stored(app)) == 1
    (event,) = _events(app, "file_unscanned")
    assert event.data == {"reason": "unavailable", "accepted": True, "size": len(CLEAN_PDF)}
    assert event.actor == sender.person.email and event.transfer_id


def test_a_file_too_large_to_scan_is_refused_not_let_through(make_app, mailbox, clamd: ClamdServer) -> None:
    app = make_app(_config(clamd, max_stream_bytes=len(CLEAN_PDF) - 1))
    sender = at_files_step(app, mailbox)
    page = sender.files([("verslag.pdf", CLEAN_PDF)], message=MESSAGE)
    assert page.status_code == 422
    assert "“verslag.pdf” was not added: files larger than" in text_of(page)
    assert "cannot be checked for viruses." in text_of(page)
    assert _stored(app) == [] and blobs.names(app) == []


def test_a_larger_stream_limit_than_clamds_still_refuses(make_app, mailbox, clamd: ClamdServer) -> None:
    # The portal thinks clamd takes more than it does: clamd's own refusal counts.
    app = make_app(_config(clamd, max_stream_bytes=4 * STREAM_MAX_BYTES))
    sender = at_files_step(app, mailbox)
    big = os.urandom(STREAM_MAX_BYTES + 1)
    before = _scans(app)
    page = sender.files([("archief.zip", big)], message=MESSAGE)
    assert page.status_code == 422 and "cannot be checked for viruses." in text_of(page)
    assert _stored(app) == [] and blobs.names(app) == []
    assert _scans(app)["too_large"] - before["too_large"] == 1


def test_a_rule_with_scan_off_skips_the_scanner(make_app, mailbox, own_clamd: ClamdServer) -> None:
    rules = [{"name": "intern", "recipients": ["*@gemeente.example"], "scan": "off"}]
    app = make_app({**_config(own_clamd), "rules": rules})
    sender = at_files_step(app, mailbox)
    own_clamd.halt()
    # Not scanned: neither the scanner's absence nor EICAR keeps the file out.
    assert sender.files([("test.txt", EICAR)]).status_code == 302
    assert len(_stored(app)) == 1
    assert not _events(app, "file_unscanned")


# Recipients changed after the upload, to a rule that requires a scan.

OUTSIDE = "piet@elders.example"


def _marks(app) -> dict[int, str]:  # type: ignore[no-untyped-def]
    return {f.size: f.scanned for f in _stored(app)}


def _uploaded_unscanned(make_app, mailbox, clamd: ClamdServer, **scan: Any) -> tuple[Any, Sender]:  # type: ignore[no-untyped-def]
    """Files in a draft to internal recipients, whose rule has scanning off; then an outside recipient."""
    rules = [{"name": "intern", "recipients": ["*@gemeente.example"], "scan": "off"}]
    app = make_app({**_config(clamd, **scan), "rules": rules})
    sender = at_files_step(app, mailbox)
    assert sender.files([("verslag.pdf", CLEAN_PDF), ("test.txt", EICAR)]).status_code == 302
    assert _marks(app) == {len(CLEAN_PDF): "not_required", len(EICAR): "not_required"}
    assert sender.options().status_code == 302
    assert sender.recipients(OUTSIDE).status_code == 302
    return app, sender


def test_files_let_in_unscanned_are_scanned_before_the_transfer_starts(make_app, mailbox, clamd: ClamdServer) -> None:
    app, sender = _uploaded_unscanned(make_app, mailbox, clamd)
    # The page says why Next will take a moment (walk: without a script it showed nothing while it scanned).
    waiting = "Not yet checked for viruses: “Next” checks it first, which can take a moment."
    assert text_of(sender.get("/send/files")).count(waiting) == 2
    # Straight to "Start transaction": held back, the files step comes first.
    held = sender.notification()
    assert held.status_code == 302 and held.location.endswith("/send/files")
    assert not _events(app, "transfer_created")
    # Next waits for the verdicts: EICAR goes, the clean file stays, marked clean.
    page = sender.files(action="next")
    assert page.status_code == 422
    assert f"“test.txt” was removed: the virus scanner found malware in it ({FOUND_AS}). {WHAT_TO_DO}" in text_of(page)
    (kept,) = _stored(app)
    assert kept.scanned == "clean" and blobs.names(app) == [kept.blob_key]
    (event,) = _events(app, "file_infected")
    assert event.data == {"signature": FOUND_AS, "size": len(EICAR)}
    assert waiting not in text_of(sender.get("/send/files"))
    assert sender.files(action="next").status_code == 302
    sent = sender.finish([OUTSIDE])
    recipient = Recipient(app)
    recipient.unlock(sent.access_id(OUTSIDE), PASSWORD)
    assert recipient.get(recipient.file_links()["verslag.pdf"]).data == CLEAN_PDF


def test_a_file_let_in_unscanned_and_too_large_to_scan_is_removed(make_app, mailbox, clamd: ClamdServer) -> None:
    app, sender = _uploaded_unscanned(make_app, mailbox, clamd, max_stream_bytes=len(CLEAN_PDF) - 1)
    page = sender.files(action="next")
    assert page.status_code == 422
    assert "“verslag.pdf” was removed: for these recipients files are checked for viruses, and files larger than" in text_of(page)
    assert _stored(app) == [] and blobs.names(app) == []


def test_with_clamd_down_next_waits_for_the_late_scan(make_app, mailbox, own_clamd: ClamdServer) -> None:
    app, sender = _uploaded_unscanned(make_app, mailbox, own_clamd)
    own_clamd.halt()
    page = sender.files(action="next")
    assert page.status_code == 503 and page.headers["Retry-After"]
    assert ("“verslag.pdf” has not been checked for viruses yet, and the virus scanner is not available. "
            "Please try again later.") in text_of(page)
    assert _marks(app) == {len(CLEAN_PDF): "not_required", len(EICAR): "not_required"}
    assert [e.data["accepted"] for e in _events(app, "file_unscanned")] == [False, False]
    held = sender.notification()
    assert held.status_code == 302 and held.location.endswith("/send/files")
    own_clamd.resume()
    assert sender.files(action="next").status_code == 422
    assert _marks(app) == {len(CLEAN_PDF): "clean"}


def test_with_clamd_down_and_accept_the_late_scan_marks_files_unscanned(make_app, mailbox, own_clamd: ClamdServer) -> None:
    app, sender = _uploaded_unscanned(make_app, mailbox, own_clamd, on_unavailable="accept")
    own_clamd.halt()
    assert sender.files(action="next").status_code == 302
    assert _marks(app) == {len(CLEAN_PDF): "unscanned", len(EICAR): "unscanned"}
    assert [e.data for e in _events(app, "file_unscanned")] == [
        {"reason": "unavailable", "accepted": True, "size": size} for size in (len(CLEAN_PDF), len(EICAR))
    ]
    sender.finish([OUTSIDE])
    assert len(_events(app, "transfer_created")) == 1


def test_without_a_backend_nothing_is_scanned(make_app, mailbox) -> None:
    app = make_app()
    sender = at_files_step(app, mailbox)
    assert sender.files([("test.txt", EICAR)]).status_code == 302
    assert "scanner" not in app.test_client().get("/readyz").json


# Operators see it.


def test_readiness_reports_the_scanner(make_app, own_clamd: ClamdServer) -> None:
    refusing = make_app(_config(own_clamd)).test_client()
    answer = refusing.get("/readyz")
    assert answer.status_code == 200 and answer.json["scanner"] == "ok"
    own_clamd.halt()
    answer = refusing.get("/readyz")
    assert answer.status_code == 503 and answer.json["scanner"] == "unreachable"
    # Uploads still go in (unscanned, audited): the node serves, and says the scanner is down.
    accepting = make_app(_config(own_clamd, on_unavailable="accept")).test_client()
    answer = accepting.get("/readyz")
    assert answer.status_code == 200 and answer.json["scanner"] == "unreachable"


def test_the_audit_summary_counts_scans_detections_and_failures(make_app, mailbox, own_clamd: ClamdServer, setup) -> None:  # type: ignore[no-untyped-def]
    app = make_app(_config(own_clamd))
    sender = at_files_step(app, mailbox)
    assert sender.files([("verslag.pdf", CLEAN_PDF), ("factuur.pdf", EICAR)], action="add").status_code == 422
    own_clamd.halt()
    assert sender.files([("bijlage.pdf", CLEAN_PDF)], action="add").status_code == 503
    (scanned,) = _events(app, "file_scanned")
    assert scanned.data == {"size": len(CLEAN_PDF)} and scanned.actor == sender.person.email
    instance = app.extensions["koerier"].instance_path
    setup.write_config(instance)
    counted = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "audit", "summary", "--since", "2000-01-01"],
        cwd=ROOT, env={"PATH": "/usr/bin:/bin", "KOERIER_INSTANCE_PATH": str(instance)},
        capture_output=True, text=True, timeout=60,
    )
    assert counted.returncode == 0, counted.stderr
    lines = counted.stdout.splitlines()
    assert {"file_scanned\t1", "file_infected\t1", "file_unscanned\t1"} <= set(lines)
    assert lines[-1] == (
        "malware scans: 3 (clean 1, infected 1, too large 0, not checked completely 0, no verdict 1, "
        "of which let in unscanned 0)"
    )


# Resumable uploads (tus).


def _zip_with_eicar() -> bytes:
    """EICAR in a ZIP, beside a member of several segments: clamd looks inside."""
    archive = BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as z:
        z.writestr("opgave.pdf", os.urandom(3 * SEGMENT_SIZE))
        z.writestr("eicar.com", EICAR)
    return archive.getvalue()


@blobs.BOTH_STORES
def test_eicar_in_a_zip_over_tus_interrupted_and_resumed_is_refused(make_app, mailbox, clamd: ClamdServer) -> None:
    app = make_app(_config(clamd))
    tus = TusSender(app, mailbox).ready()
    data = _zip_with_eicar()
    location = tus.create(len(data), name="stukken.zip").headers["Location"]
    # Cut off after 100,000 bytes: the whole first segment is kept, and the rest follows from there.
    first = tus.patch(location, 0, data[:100_000])
    assert first.status_code == 204 and first.headers["Upload-Offset"] == str(SEGMENT_SIZE)
    rest = tus.patch(location, SEGMENT_SIZE, data[SEGMENT_SIZE:])
    assert rest.status_code == 422
    found = f"the virus scanner found malware in it ({FOUND_AS}). {WHAT_TO_DO}"
    assert rest.json["error"] == f"“stukken.zip” was not added: {found}"
    assert tus.head(location).status_code == 404
    assert _stored(app) == [] and blobs.names(app) == []
    (event,) = _events(app, "file_infected")
    assert event.data == {"signature": FOUND_AS, "size": len(data)}


@blobs.BOTH_STORES
def test_over_tus_a_file_without_a_verdict_waits_complete_and_is_judged_again(make_app, mailbox, own_clamd: ClamdServer) -> None:
    app = make_app(_config(own_clamd))
    tus = TusSender(app, mailbox).ready()
    data = os.urandom(2 * SEGMENT_SIZE + 10)
    location = tus.create(len(data), name="scan.pdf").headers["Location"]
    own_clamd.halt()
    answer = tus.patch(location, 0, data)
    assert answer.status_code == 503 and answer.headers["Retry-After"] and answer.json["reason"] == "scanner"
    assert answer.json["error"] == "“scan.pdf” was not added: the virus scanner is not available. Please try again later."
    # Kept whole, not yet a file of the transfer; Next waits for it.
    assert tus.head(location).headers["Upload-Offset"] == str(len(data))
    assert _stored(app) == []
    assert "Uploaded, not yet checked for viruses" in text_of(tus.get("/send/files"))
    assert tus.files(action="next").status_code == 422
    # Asked again without the bytes: still no scanner, then the verdict.
    assert tus.patch(location, len(data), b"").status_code == 503
    own_clamd.resume()
    judged = tus.patch(location, len(data), b"")
    assert judged.status_code == 204 and judged.headers["Upload-Offset"] == str(len(data))
    # An answer lost on the way is asked for again: the file is in.
    assert tus.patch(location, len(data), b"").status_code == 204
    assert tus.patch(location, 0, data[:10]).status_code == 409
    recipient = tus.open_uploaded()
    assert recipient.get(recipient.file_links()["scan.pdf"]).data == data
    assert [e.data["accepted"] for e in _events(app, "file_unscanned")] == [False, False]


@pytest.mark.parametrize("infected", [False, True], ids=["clean", "infected"])
def test_two_requests_asking_again_at_once_get_one_verdict(make_live, mailbox, own_clamd: ClamdServer, infected: bool) -> None:
    """The page's script asking again and the sender adding the same file
    again may meet: the second request judged the file too, and answered
    500 when it came to record its verdict over the first one's."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    app, _ = make_live({**_config(own_clamd), "site": {"base_url": base}}, port=port, threads=4)
    tus = TusSender(app, mailbox, via=base).ready()
    # Most of what clamd takes, so that the two scans overlap.
    data = _zip_with_eicar() if infected else b""
    data += os.urandom(STREAM_MAX_BYTES - SEGMENT_SIZE - len(data))
    location = urljoin(base, tus.create(len(data), name="stukken.zip").headers["Location"])
    headers = {
        **tus.headers(), "Cookie": tus.cookie_header(), "Origin": base,
        "Content-Type": "application/offset+octet-stream",
    }
    own_clamd.halt()
    sent = requests.patch(location, data=data, headers={**headers, "Upload-Offset": "0"}, timeout=120)
    assert sent.status_code == 503
    own_clamd.resume()
    together = threading.Barrier(2)

    def ask_again(_: int) -> int:
        together.wait()
        answer = requests.patch(location, data=b"", headers={**headers, "Upload-Offset": str(len(data))}, timeout=120)
        return answer.status_code

    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(ask_again, range(2)))
    # One judges; the other waits its turn (423), or finds the verdict made.
    verdict, after = (422, 410) if infected else (204, 204)
    assert verdict in answers and set(answers) <= {verdict, 423, after}, answers
    if infected:
        assert _stored(app) == [] and len(_events(app, "file_infected")) == 1
    else:
        assert len(_stored(app)) == 1


def test_over_tus_a_file_too_large_to_scan_is_refused_before_its_bytes(make_app, mailbox, clamd: ClamdServer) -> None:
    app = make_app(_config(clamd))
    tus = TusSender(app, mailbox).ready()
    created = tus.create(STREAM_MAX_BYTES + 1, name="groot.zip")
    assert created.status_code == 413
    assert "“groot.zip” was not added: files larger than" in created.json["error"]


GiB = 1024**3


@pytest.mark.setup("embedded")  # the worker's memory, whichever database holds the rows
def test_scanning_a_gib_keeps_the_worker_within_the_bound_of_uploads(make_live, mailbox, roomy_clamd: ClamdServer, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The upload and then its scan, decrypted segment by segment into
    clamd: the bound of tests/test_large_transfers.py, which a file held
    in memory for its scan would pass many times over."""
    app, server = make_live(_config(roomy_clamd))
    source = tmp_path / "archief.zip"
    random_file(source, GiB)
    sender = at_files_step(app, mailbox)
    server.reset_peak_rss()
    upload_by_tus(server, sender, source)
    peak = server.peak_rss()
    (stored,) = _stored(app)
    assert (stored.size, stored.scanned) == (GiB, "clean")
    assert peak < 150 * 1000 * 1000, peak


# Replies.


def test_a_reply_with_eicar_is_refused_like_any_upload(make_app, mailbox, clamd: ClamdServer) -> None:
    app = make_app(_config(clamd))
    anna = Sender(app, mailbox).replier(Person(name="Anna Jansen", email="anna@gemeente.example"))
    assert anna.get("/send/files").status_code == 200  # the reply's recipient is filled in
    answer = anna.files([("antwoord.pdf", EICAR)], message=MESSAGE)
    assert answer.status_code == 422 and FOUND_AS in text_of(answer)
    (event,) = _events(app, "file_infected")
    assert event.actor == "anna@gemeente.example"
    assert len(_stored(app)) == 1  # the first transfer's file alone

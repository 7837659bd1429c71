"""Attacks on malware scanning by a verified sender, with a real clamd and a real server."""

from __future__ import annotations

import base64
import os
import re
import threading
import time
import zipfile
from collections.abc import Callable
from io import BytesIO
from typing import Any
from urllib.parse import urljoin

import pytest
import requests

from app import audit, db

from . import blobs
from .clamd import EICAR, ClamdServer
from .live import free_port
from .nginx import Nginx
from .test_scanning import CLEAN_PDF, OUTSIDE, _config, _events, _stored, at_files_step
from .test_tus import TusSender
from .walker import Sender, csrf_token, multipart, text_of


def _connections_to(port: int) -> int:
    """Open TCP connections to ``port`` on this machine, counted from the connecting side."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as fh:
            for line in list(fh)[1:]:
                fields = line.split()
                if fields[3] == "01" and int(fields[2].rsplit(":", 1)[1], 16) == port:
                    count += 1
    return count


def _unaccepted_at(port: int) -> int:
    """Connections to ``port`` on this machine waiting for its listener to
    take them (a stopped clamd takes none): the listening socket's queue."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as fh:
            for line in list(fh)[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    count += int(fields[4].split(":")[1], 16)
    return count


def _wait_for(condition: Any, deadline_seconds: float = 60) -> None:
    deadline = time.monotonic() + deadline_seconds
    while not condition():
        assert time.monotonic() < deadline, "gave up waiting"
        time.sleep(0.05)


def _files_to_scan_at_next(make_live, mailbox, clamd: ClamdServer, limits: dict[str, Any] | None = None):  # type: ignore[no-untyped-def]
    """A live server, and a sender over HTTP whose two files (one clean, one
    EICAR) came in unscanned for internal recipients, before an outside one
    whose rule requires the scan that Next makes."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    rules = [{"name": "intern", "recipients": ["*@gemeente.example"], "scan": "off"}]
    config = {**_config(clamd), "rules": rules, "site": {"base_url": base}, "limits": limits or {}}
    app, _ = make_live(config, port=port, threads=4)
    sender = Sender(app, mailbox, via=base)
    sender.personal()
    sender.verify()
    assert sender.recipients("anna@gemeente.example").status_code == 302
    assert sender.files([("verslag.pdf", CLEAN_PDF), ("test.txt", EICAR)]).status_code == 302
    assert sender.recipients(OUTSIDE).status_code == 302
    return app, base, sender


def _next_request(sender: Sender, base: str) -> tuple[bytes, dict[str, str]]:
    """The body and headers of the files step's Next, for a client of the test's own."""
    body, content_type = multipart([
        ("csrf_token", sender.upload_token()), ("files", ("", b"")), ("message", ""), ("action", "next"),
    ])
    headers = {"Cookie": sender.cookie_header(), "Content-Type": content_type, "Origin": base, "Accept-Language": "en"}
    return body, headers


def test_parallel_nexts_cannot_make_the_late_scan_run_past_the_upload_caps(make_live, mailbox, own_clamd: ClamdServer) -> None:
    """Files let in unscanned are scanned when the sender presses Next. That
    scan ran outside the caps on concurrent uploads: a sender firing Next
    many times at once had every file scanned once per request, each holding
    a server thread and a clamd thread (a worker pool held with one
    upload's bytes). Now the late scan counts as an upload: one request
    past the sender's cap is told to try again, without scanning."""
    app, base, sender = _files_to_scan_at_next(make_live, mailbox, own_clamd, {"concurrent_uploads_per_sender": 1})
    body, headers = _next_request(sender, base)
    answers: dict[str, int | str] = {}

    def press_next(which: str) -> None:
        try:
            answers[which] = requests.post(f"{base}/send/files", data=body, headers=headers, timeout=120).status_code
        except requests.RequestException as exc:
            answers[which] = repr(exc)

    first = threading.Thread(target=press_next, args=("first",))
    second = threading.Thread(target=press_next, args=("second",))
    # clamd stalls (busy, swapping): the first Next waits in its scan.
    with own_clamd.stalled():
        first.start()
        _wait_for(lambda: _connections_to(own_clamd.port) == 1)
        second.start()
        _wait_for(lambda: not second.is_alive() or _connections_to(own_clamd.port) > 1)
    first.join(timeout=120)
    second.join(timeout=120)
    assert answers == {"first": 422, "second": 429}
    # Each file scanned once.
    assert len(_events(app, "file_scanned")) == 1 and len(_events(app, "file_infected")) == 1


@pytest.mark.parametrize("removed", ["verslag.pdf", "test.txt"])
def test_a_file_removed_in_another_tab_while_next_scans_it(make_live, mailbox, own_clamd: ClamdServer, removed: str) -> None:
    """Next scans the files let in unscanned; the sender removes one of them
    in another tab meanwhile. Next then marked the file clean (or, found
    infected, deleted it) in a row that was gone: a server error. The
    removal stands, and Next answers for what is left."""
    app, base, sender = _files_to_scan_at_next(make_live, mailbox, own_clamd)
    page = sender.get("/send/files").get_data(as_text=True)
    remove = next(action for action in re.findall(r'action="(/send/files/[^"]+/remove)"', page)
                  if removed in page.split(action)[0].rsplit("<tr", 1)[1])
    token = csrf_token(page)
    body, headers = _next_request(sender, base)
    answer: dict[str, Any] = {}

    def press_next() -> None:
        try:
            answer["next"] = requests.post(f"{base}/send/files", data=body, headers=headers, timeout=120)
        except requests.RequestException as exc:
            answer["next"] = exc

    scanning = threading.Thread(target=press_next)
    with own_clamd.stalled():
        scanning.start()
        _wait_for(lambda: _connections_to(own_clamd.port) == 1)
        gone = requests.post(
            base + remove, data={"csrf_token": token}, allow_redirects=False, timeout=60,
            headers={"Cookie": sender.cookie_header(), "Origin": base},
        )
        assert gone.status_code == 302
    scanning.join(timeout=120)
    assert isinstance(answer["next"], requests.Response), answer["next"]
    assert answer["next"].status_code in (200, 422), answer["next"].status_code
    names = {f for f in ("verslag.pdf", "test.txt") if f in text_of(sender.get("/send/files"))}
    assert removed not in names
    assert len(_stored(app)) == len(names)


def _zip(fill: Callable[[zipfile.ZipFile], None]) -> bytes:
    archive = BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        fill(z)
    return archive.getvalue()


def _nested(depth: int) -> bytes:
    data = _zip(lambda z: z.writestr("eicar.com", EICAR))
    for _ in range(depth - 1):
        data = _zip(lambda z, inner=data: z.writestr("stukken.zip", inner))
    return data


def _after_empty_members(count: int) -> bytes:
    def fill(z: zipfile.ZipFile) -> None:
        for n in range(count):
            z.writestr(f"leeg{n}.txt", b"")
        z.writestr("eicar.com", EICAR)
    return _zip(fill)


def _many_empty_members(count: int) -> bytes:
    return _zip(lambda z: [z.writestr(f"leeg{n}.txt", b"") for n in range(count)])


INCOMPLETE = (
    "“stukken.zip” was not added: the virus scanner could not check all of its content (it unpacks to more, "
    "or deeper, than the scanner checks). Please send the files in it separately or in smaller parts."
)


@pytest.mark.parametrize(("build", "limit"), [
    (lambda: _nested(20), "MaxRecursion"),
    (lambda: _after_empty_members(10_001), "MaxFiles"),
    (lambda: _many_empty_members(10_001), "MaxFiles"),
], ids=["eicar-nested-20-deep", "eicar-after-10001-members", "nothing-but-10001-members"])
def test_a_file_past_clamds_limits_is_refused_as_not_checked_completely(
    make_app, mailbox, clamd: ClamdServer, build: Callable[[], bytes], limit: str,
) -> None:
    """A few kilobytes of ZIP take EICAR past what clamd unpacks; with
    clamd's defaults it answered "OK" and the file went out marked clean.
    The README requires ``AlertExceedsMax yes``, as the test daemon has:
    clamd then answers ``Heuristics.Limits.Exceeded.<limit> FOUND``, also
    for an archive with nothing bad in it (a large one of scans). That is
    no detection: the sender was told "the virus scanner found malware in
    it". The file is refused as not checked completely, even where an
    outage would let files in unscanned (on_unavailable = "accept")."""
    app = make_app(_config(clamd, on_unavailable="accept"))
    sender = at_files_step(app, mailbox)
    data = build()
    answer = sender.files([("stukken.zip", data)])
    assert answer.status_code == 422
    assert INCOMPLETE in text_of(answer) and "malware" not in text_of(answer)
    assert _stored(app) == [] and not _events(app, "file_scanned") and not _events(app, "file_infected")
    (event,) = _events(app, "file_unscanned")
    assert event.data == {"reason": "incomplete", "limit": limit, "accepted": False, "size": len(data)}
    with app.app_context():
        assert audit.summary(db.session(), event.at).scans["incomplete"] == 1


def test_over_tus_a_file_past_clamds_limits_is_refused_as_not_checked_completely(make_app, mailbox, clamd: ClamdServer) -> None:
    app = make_app(_config(clamd))
    tus = TusSender(app, mailbox).ready()
    data = _nested(20)
    location = tus.create(len(data), name="stukken.zip").headers["Location"]
    answer = tus.patch(location, 0, data)
    assert answer.status_code == 422 and answer.json["error"] == INCOMPLETE
    assert tus.head(location).status_code == 404
    assert _stored(app) == [] and blobs.names(app) == []


def test_a_file_let_in_unscanned_and_past_clamds_limits_is_removed_at_next(make_app, mailbox, clamd: ClamdServer) -> None:
    rules = [{"name": "intern", "recipients": ["*@gemeente.example"], "scan": "off"}]
    app = make_app({**_config(clamd), "rules": rules})
    sender = at_files_step(app, mailbox)
    assert sender.files([("verslag.pdf", CLEAN_PDF), ("stukken.zip", _many_empty_members(10_001))]).status_code == 302
    assert sender.recipients(OUTSIDE).status_code == 302
    page = sender.files(action="next")
    assert page.status_code == 422
    assert ("“stukken.zip” was removed: for these recipients files are checked for viruses, and the virus scanner "
            "could not check all of its content.") in text_of(page)
    (kept,) = _stored(app)
    assert kept.scanned == "clean" and blobs.names(app) == [kept.blob_key]


@blobs.BOTH_STORES
def test_an_upload_removed_while_its_verdict_is_awaited_stays_removed(
    make_live, mailbox, own_clamd: ClamdServer,
) -> None:
    """The script's last PATCH waits for the scanner; the sender presses
    Cancel (tus DELETE), or Remove in another tab, meanwhile. The verdict
    then made the removed upload a file of the draft anyway, its blob
    deleted: the file was back on the page, and its recipient could not
    download it, or the request failed (500). The removal stands, also when
    the blob goes while the scanner still reads it."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    app, _ = make_live({**_config(own_clamd), "site": {"base_url": base}}, port=port, threads=4)
    tus = TusSender(app, mailbox, via=base).ready()
    # More than the sockets to a stalled clamd hold: part of it is still to be read when the blob goes.
    data = b"%PDF-1.4\n" + os.urandom(3 * 1024 * 1024)
    location = urljoin(base, tus.create(len(data), name="verslag.pdf").headers["Location"])
    headers = {**tus.headers(), "Cookie": tus.cookie_header(), "Origin": base}
    answer: dict[str, Any] = {}

    def send() -> None:
        try:
            answer["patch"] = requests.patch(
                location, data=data, timeout=120,
                headers={**headers, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"},
            )
        except requests.RequestException as exc:
            answer["patch"] = exc

    sending = threading.Thread(target=send)
    with own_clamd.stalled():
        sending.start()
        _wait_for(lambda: _connections_to(own_clamd.port) == 1)
        assert requests.delete(location, headers=headers, timeout=60).status_code == 204
    sending.join(timeout=120)
    assert isinstance(answer["patch"], requests.Response), answer["patch"]
    assert answer["patch"].status_code == 410, answer["patch"].status_code
    assert "verslag.pdf" not in text_of(tus.get("/send/files"))
    assert _stored(app) == [] and blobs.names(app) == []


def test_a_file_whose_scan_does_not_end_in_time_is_never_let_in_unscanned(
    make_app, mailbox, own_clamd: ClamdServer,
) -> None:
    """With ``on_unavailable = "accept"`` a file clamd gives no verdict on is
    let in unscanned: meant for an outage. A sender decides how long clamd
    scans: a ZIP of 360 KB holding EICAR beside four members of 90 MB of
    zeros took this machine's clamd four seconds with the tests' one
    signature, and clamd's own limit (MaxScanTime, 120 s by default; its
    verdict, Heuristics.Limits.Exceeded, is refused) comes after the portal's
    ``timeout_seconds`` (60). Such a file went out unscanned. A file clamd
    took whole and did not judge in time is refused, whatever
    ``on_unavailable`` says; here clamd stalls once it holds the file, which
    the portal cannot tell from a scan still running."""
    app = make_app(_config(own_clamd, on_unavailable="accept", timeout_seconds=1))
    sender = at_files_step(app, mailbox)
    with own_clamd.stalled():
        answer = sender.files([("stukken.zip", _zip(lambda z: z.writestr("eicar.com", EICAR)))])
    assert answer.status_code == 503
    assert "“stukken.zip” was not added: the virus scanner is not available." in text_of(answer)
    assert _stored(app) == [] and blobs.names(app) == []
    (event,) = _events(app, "file_unscanned")
    assert event.data["accepted"] is False


# Made with `zip -P geheim`: a.txt ("hallo"), encrypted as ZIP 2.0 does.
ENCRYPTED_ZIP = base64.b64decode(
    "UEsDBAoACQAAAE+Uel3glrrDEgAAAAYAAAAFABwAYS50eHRVVAkAA7Z7CGu2ewhrdXgLAAEEAAAAAAQAAAAAZSHUSq2/9j4T4FSjRfN32M3oUEsH"
    "COCWusMSAAAABgAAAFBLAQIeAwoACQAAAE+Uel3glrrDEgAAAAYAAAAFABgAAAAAAAEAAACkgQAAAABhLnR4dFVUBQADtnsIa3V4CwABBAAAAAAE"
    "AAAAAFBLBQYAAAAAAQABAEsAAABhAAAAAAA="
)
PROTECTED = "it is protected with a password, so the virus scanner cannot check it. Please add it without the password"


def test_a_password_protected_archive_is_not_called_malware(make_app, mailbox, clamd: ClamdServer) -> None:
    """With ``AlertEncryptedArchive yes``, which the README offers, clamd
    answers ``Heuristics.Encrypted.Zip FOUND`` for a ZIP protected with a
    password, as many people are told to send documents by mail. The sender
    read "the virus scanner found malware in it", and the trail and metrics
    counted a detection. It is refused as a file the scanner cannot check,
    saying what to do; never let in, whatever ``on_unavailable`` says."""
    app = make_app(_config(clamd, on_unavailable="accept"))
    sender = at_files_step(app, mailbox)
    answer = sender.files([("stukken.zip", ENCRYPTED_ZIP)])
    assert answer.status_code == 422
    assert f"“stukken.zip” was not added: {PROTECTED}" in text_of(answer) and "malware" not in text_of(answer)
    assert _stored(app) == [] and not _events(app, "file_infected")
    (event,) = _events(app, "file_unscanned")
    limit = {"reason": "incomplete", "limit": "Encrypted.Zip"}
    assert event.data == {**limit, "accepted": False, "size": len(ENCRYPTED_ZIP)}


def test_a_password_protected_archive_let_in_unscanned_is_removed_at_next(
    make_app, mailbox, clamd: ClamdServer,
) -> None:
    rules = [{"name": "intern", "recipients": ["*@gemeente.example"], "scan": "off"}]
    app = make_app({**_config(clamd), "rules": rules})
    sender = at_files_step(app, mailbox)
    assert sender.files([("verslag.pdf", CLEAN_PDF), ("stukken.zip", ENCRYPTED_ZIP)]).status_code == 302
    assert sender.recipients(OUTSIDE).status_code == 302
    page = sender.files(action="next")
    assert page.status_code == 422
    removed = "“stukken.zip” was removed: for these recipients files are checked for viruses, and "
    assert removed + PROTECTED in text_of(page)
    (kept,) = _stored(app)
    assert kept.scanned == "clean"


@pytest.mark.setup("embedded")  # about the proxy's timeouts, whichever database
def test_behind_the_proxy_a_scan_that_takes_its_whole_timeout_gets_the_portals_answer(
    make_live, mailbox, own_clamd: ClamdServer, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The README's nginx waited 60 s for an upload's answer (its
    proxy_read_timeout), the portal as long for clamd's verdict
    (scan.timeout_seconds): with clamd stalled, or a file slow to scan, the
    sender got nginx's bare "504 Gateway Time-out", not the portal's page
    saying that the virus scanner is not available, in their language, with
    their message kept. The upload paths wait longer."""
    port = free_port()
    proxy = Nginx([port], max_body=64 * 1024 * 1024)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(proxy.cert))
    try:
        app, _ = make_live({"site": {"base_url": proxy.url, "trusted_proxies": 1}, **_config(own_clamd)}, port=port)
        sender = Sender(app, mailbox, via=proxy.url)
        sender.personal()
        sender.verify()
        assert sender.recipients("anna@gemeente.example").status_code == 302
        with own_clamd.stalled():
            page = sender.files([("verslag.pdf", CLEAN_PDF)], message="Zie bijlage")
        assert page.status_code == 503, text_of(page)[:300]
        assert "“verslag.pdf” was not added: the virus scanner is not available." in text_of(page)
        assert "Zie bijlage" in text_of(page)
    finally:
        proxy.stop()


@pytest.mark.parametrize("where", ["form", "next"])
def test_with_clamd_stalled_a_request_waits_for_it_once(make_app, mailbox, own_clamd: ClamdServer, where: str) -> None:
    """With clamd stalled, each file of a request waited
    ``scan.timeout_seconds`` for it in turn: a form post of 100 files (the
    default transfer.max_files), or Next with as many to scan, held its
    server thread and its sender for 100 minutes (nginx gave up after five).
    Once clamd has not answered, the request's other files are not sent to
    it: each is refused as the scanner not being available, at once."""
    rules = [{"name": "intern", "recipients": ["*@gemeente.example"], "scan": "off"}]
    app = make_app({**_config(own_clamd, timeout_seconds=1), "rules": rules})
    sender = at_files_step(app, mailbox)
    files = [(f"verslag{n}.pdf", CLEAN_PDF) for n in range(3)]
    if where == "next":
        assert sender.files(files).status_code == 302
    assert sender.recipients(OUTSIDE).status_code == 302
    with own_clamd.stalled():
        page = sender.files(files) if where == "form" else sender.files(action="next")
        tried = _unaccepted_at(own_clamd.port)
    assert page.status_code == 503
    assert text_of(page).count("the virus scanner is not available. Please try again later.") == 3
    assert tried == 1

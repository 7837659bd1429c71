"""Prometheus metrics: they count what a walk does, answer only the allow-list,
and under gunicorn every worker answers the totals of all of them."""

from __future__ import annotations

import os
import re
import zipfile
from io import BytesIO
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from app import purge
from app.crypto.stream import SEGMENT_SIZE
from app.db import new_session
from app.ids import new_access_id
from app.settings import ConfigError, load_settings

from .test_tus import TusSender
from .walker import PASSWORD, Person, Recipient, Sender, csrf_token

ROOT = Path(__file__).resolve().parent.parent
ON = {"metrics": {"enabled": True}}
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _parse(exposition: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }


def _scrape(app) -> Samples:  # type: ignore[no-untyped-def]
    answer = app.test_client().get("/metrics")
    assert answer.status_code == 200
    return _parse(answer.get_data(as_text=True))


def _moved(before: Samples, after: Samples) -> dict[str, float]:
    """What changed, as ``name{label=value}``: a sample that is new counts from 0."""
    return {
        name + "".join(f"{{{k}={v}}}" for k, v in labels): value - before.get((name, labels), 0.0)
        for (name, labels), value in after.items()
        if value != before.get((name, labels), 0.0) and not name.endswith("_bucket") and not name.endswith("_sum")
    }


def test_the_counters_follow_a_walk(make_app, mailbox) -> None:
    app = make_app({**ON, "download": {"max_attempts": 3}})
    before = _scrape(app)

    report = b"%PDF-1.4 jaarverslag\n" * 5000
    sent = Sender(app, mailbox).send(files=[("jaarverslag.pdf", report)])
    tus = TusSender(app, mailbox, Person(email="els@zorg.example")).ready()
    scan = os.urandom(2 * SEGMENT_SIZE + 10)
    location = tus.create(len(scan)).headers["Location"]
    assert tus.patch(location, 0, scan).status_code == 204
    tus.open_uploaded()

    recipient = Recipient(app)
    access_id = sent.access_id("anna@gemeente.example")
    assert recipient.unlock(access_id, "niet het wachtwoord").status_code == 403
    assert recipient.unlock(access_id, PASSWORD).status_code == 302
    assert recipient.get(recipient.file_links()["jaarverslag.pdf"]).data == report
    archive = recipient.get("/download/all").data
    assert zipfile.ZipFile(BytesIO(archive)).read("jaarverslag.pdf") == report
    # Three wrong passwords lock the ID; the mail that tells the sender is refused.
    with mailbox.refusing():
        for _ in range(3):
            Recipient(app).unlock(access_id, "nog steeds fout")
    assert recipient.unlock(access_id, PASSWORD).status_code == 429
    purge.run(lambda: new_session(app), app.extensions["koerier"])

    assert _moved(before, _scrape(app)) == {
        "koerier_transfers_started_total": 2,
        "koerier_upload_bytes_total{via=form}": len(report),
        "koerier_upload_bytes_total{via=tus}": len(scan),
        "koerier_password_failures_total": 4,
        "koerier_lockouts_total": 1,
        "koerier_mails_failed_total": 1,
        "koerier_downloads_total{kind=download}": 1,
        "koerier_downloads_total{kind=archive}": 1,
        "koerier_download_bytes_total": 2 * len(report),
        "koerier_purge_duration_seconds_count": 1,
    }


def test_metrics_are_off_unless_enabled(make_app) -> None:
    assert make_app().test_client().get("/metrics").status_code == 404


def test_only_the_allow_list_gets_the_metrics(make_app) -> None:
    client = make_app(ON).test_client()
    assert client.get("/metrics").status_code == 200  # the test client is 127.0.0.1
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "::1"}).status_code == 200
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "::ffff:127.0.0.1"}).status_code == 200
    outside = {"REMOTE_ADDR": "203.0.113.9"}
    assert client.get("/metrics", environ_base=outside).status_code == 404
    # Without a trusted proxy the header is anybody's to write, and is not believed.
    assert client.get("/metrics", environ_base=outside, headers={"X-Forwarded-For": "127.0.0.1"}).status_code == 404


def test_behind_a_proxy_the_client_it_saw_decides(make_app) -> None:
    """The attack: a client in front of nginx sends ``X-Forwarded-For:
    10.0.5.7``, naming the scraper's network; nginx appends the address it
    saw. Only the proxy's own entry is believed, as for the rate limits."""
    config = {"site": {"trusted_proxies": 1}, "metrics": {"enabled": True, "allow": ["10.0.5.0/24"]}}
    client = make_app(config).test_client()
    # The test client's 127.0.0.1 is nginx.
    assert client.get("/metrics", headers={"X-Forwarded-For": "10.0.5.7"}).status_code == 200
    assert client.get("/metrics", headers={"X-Forwarded-For": "10.0.5.7, 203.0.113.9"}).status_code == 404
    # nginx itself is not on the list; only who it speaks for counts.
    assert client.get("/metrics").status_code == 404


def test_a_wrong_network_in_the_allow_list_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"metrics\.allow: '10\.0\.5\.1/24' is not an address or a network"):
        load_settings(None, {"metrics": {"allow": ["10.0.5.1/24"]}})


def _fail_unlock(url: str) -> None:
    with requests.Session() as http:
        page = http.get(url + "/download/", timeout=60)
        guess = {"csrf_token": csrf_token(page.text), "transaction_id": new_access_id(), "password": "fout"}
        answer = http.post(url + "/download/", data=guess, allow_redirects=False, timeout=60)
        assert answer.status_code == 303, answer.text


def test_every_gunicorn_worker_answers_the_totals_of_all(make_live, monkeypatch) -> None:
    """Two workers under deploy/gunicorn.conf.py: each counts its own guesses,
    and whichever answers /metrics answers the sum."""
    config = ROOT / "deploy" / "gunicorn.conf.py"
    # The access log says which worker (pid) served each request.
    monkeypatch.setenv("GUNICORN_CMD_ARGS", f"-c {config} --access-logformat '%(p)s %(m)s %(U)s %(s)s'")
    app, server = make_live(
        {**ON, "site": {"base_url": "http://localhost:5000"}, "limits": {"failed_downloads_per_ip_per_hour": 1000}},
        workers=2,
    )
    workers = set(server.worker_pids())
    failures = 0
    while failures < 4 or _guessed_on(server.access_log) != workers:
        assert failures < 100, "one worker took every request"
        _fail_unlock(server.url)
        failures += 1
    for _ in range(6):
        # A connection of its own each time, so either worker may answer.
        scraped = _parse(requests.get(server.url + "/metrics", headers={"Connection": "close"}, timeout=60).text)
        assert scraped[("koerier_password_failures_total", ())] == failures


def _guessed_on(access_log: Path) -> set[int]:
    return {int(pid) for pid in re.findall(r"^<(\d+)> POST /download/ 303$", access_log.read_text(), re.M)}

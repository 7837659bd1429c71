"""Two app servers behind nginx, sharing one PostgreSQL database, one store and one secret key.

The proxy is Debian's nginx with the configuration README's Deploy section
describes (tests/nginx.py). It hands each request to the other node than
the one before, so every walk through the portal here checks that nothing a
request needs lives in one node's memory or on one node's disk; nginx's log
says which node served what.

The nodes are separate gunicorn processes with instance folders of their
own. What they share is what an operator shares between machines: the
database (``storage.database_url``), the store, ``KOERIER_SECRET_KEY`` and
the configuration. The store is one S3 bucket (SeaweedFS), and again a
local folder both nodes reach (they run on one machine here; on several,
a shared file system): the tests about the store run on each, the others
on the bucket.

The tests share one set of servers per store (starting them takes
seconds). The last test kills a node, so it stays last.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import io
import os
import re
import secrets
import ssl
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest
import requests
import tomli_w
from flask import Flask
from sqlalchemy import select
from tusclient.client import TusClient
from werkzeug.wrappers import Response

from app import create_app, db
from app.crypto.stream import SEGMENT_SIZE
from app.models import Event, Upload
from wizard.views import UPLOAD_OVERHEAD

from .conftest import Setup, base_config, merge
from .live import DroppingProxy, LiveServer, free_port, random_file, resume_upload, wait_for
from .mailbox import Mailbox
from .nginx import INSTALL_HINT, Hop, Nginx, find_nginx
from .pg import PostgresServer
from .seaweed import SeaweedServer
from .walker import PASSWORD, Browser, Person, Recipient, Sender, csrf_token, text_of

# One worker runs this module: its cluster is built once per store, and the
# test that kills a node runs last on it.
pytestmark = pytest.mark.xdist_group("nodes")

MiB = 1024 * 1024
MAX_TOTAL = 32 * MiB
# tus PATCH size: each acknowledged offset is a multiple of it.
CHUNK = 8 * MiB
TUS = {"Tus-Resumable": "1.0.0"}


# Tests that are about the database, not the store, run on the bucket only.
ON_THE_BUCKET = pytest.mark.parametrize("cluster", ["s3"], indirect=True)


def address(node: LiveServer) -> str:
    """How nginx names a node in its log."""
    return f"127.0.0.1:{node.port}"


@dataclass
class Cluster:
    store: str
    proxy: Nginx
    nodes: list[LiveServer]
    # In-process, on the same database and store, to look into them.
    app: Flask
    mailbox: Mailbox

    @property
    def url(self) -> str:
        return self.proxy.url

    def node(self, hop: Hop) -> LiveServer:
        """The node that answered ``hop``."""
        found = [n for n in self.nodes if address(n) == hop.upstream]
        assert found, f"nginx answered {hop.method} {hop.uri} itself ({hop.status}): it never reached a node"
        return found[0]

    def other(self, node: LiveServer) -> LiveServer:
        [other] = [n for n in self.nodes if n is not node]
        return other

    def sender(self, email: str) -> Sender:
        return Sender(self.app, self.mailbox, Person(email=email), via=self.url)

    def recipient(self) -> Recipient:
        return Recipient(self.app, via=self.url)

    def at_files_step(self, email: str) -> Sender:
        sender = self.sender(email)
        assert sender.personal().status_code == 302
        assert sender.verify().status_code == 302
        assert sender.recipients("anna@gemeente.example").status_code == 302
        return sender

    def mark(self) -> int:
        """How many requests nginx has logged: all so far, once the last one was waited for (``hops``, ``probe``)."""
        return len(self.proxy.hops())

    def hops(self, since: int, until: Callable[[list[Hop]], bool]) -> list[Hop]:
        """The requests nginx finished since ``since``, once ``until`` holds for
        them: a client may see its answer just before nginx logs it."""

        def done() -> list[Hop] | None:
            hops = self.proxy.hops()[since:]
            return hops if until(hops) else None

        return wait_for(done, "nginx's log")

    def probe(self) -> Hop:
        """One request through the proxy, and where it went, once nginx and that node have logged it."""
        path = f"/help?probe={secrets.token_hex(4)}"
        assert requests.get(self.url + path, timeout=60).status_code == 200
        [hop] = [h for h in self.hops(0, lambda hops: any(h.uri == path for h in hops)) if h.uri == path]
        node = self.node(hop)
        wait_for(lambda: any(f"GET {path} " in line for line in log_lines(node)), "the node's log")
        return hop

    def settle(self) -> None:
        """Until nginx and both nodes have logged every request made so far
        (each logs in order): a probe through each node."""
        assert {self.probe().upstream, self.probe().upstream} == {address(node) for node in self.nodes}

    def next_to(self, node: LiveServer) -> None:
        """Have the next request through the proxy go to ``node``: round robin
        hands each request to the other node than the one before."""
        for _ in range(2):
            if self.probe().upstream != address(node):
                return
        raise AssertionError("nginx sent two requests in a row to one node")

    def submit_on(
        self, node: LiveServer, browser: Browser, path: str, data: dict[str, str], page: str | None = None
    ) -> Response:
        """``browser`` fetches the form at ``page`` (default: ``path``), then posts it through ``node``."""
        token = csrf_token(browser.get(page or path).get_data(as_text=True))
        self.next_to(node)
        mark = self.mark()
        answer = browser.post(path, data={"csrf_token": token, **data})
        [post, *_] = self.hops(mark, lambda hops: any(h.method == "POST" for h in hops))
        assert post.upstream == address(node)
        return answer

    def tus_headers(self, sender: Sender) -> dict[str, str]:
        return {**TUS, "Cookie": sender.cookie_header(), "X-CSRFToken": sender.upload_token()}

    def new_upload(self, headers: dict[str, str], length: int, name: str) -> str:
        """A tus creation through the proxy; the new upload's URL."""
        metadata = "filename " + base64.b64encode(name.encode()).decode()
        created = requests.post(
            self.url + "/send/uploads", headers={**headers, "Upload-Length": str(length), "Upload-Metadata": metadata},
            timeout=60,
        )
        assert created.status_code == 201
        return urljoin(self.url, created.headers["Location"])


def log_lines(node: LiveServer) -> list[str]:
    return node.access_log.read_text().splitlines()


def shared_store(request: pytest.FixtureRequest, folder: Path, cleanup: ExitStack) -> dict[str, str]:
    """The ``[storage]`` keys of the one store the nodes share."""
    if request.param == "local":
        # Absolute: each node resolves a relative one against its own instance folder.
        return {"blob_dir": str(folder / "store")}
    seaweed: SeaweedServer = request.getfixturevalue("seaweed")
    bucket = seaweed.create_bucket()
    cleanup.callback(seaweed.delete_bucket, bucket)
    return seaweed.config(bucket)


@pytest.fixture(scope="module", params=["s3", "local"])
def cluster(
    request: pytest.FixtureRequest, postgres: PostgresServer, mailbox: Mailbox, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    if find_nginx() is None:
        pytest.fail(INSTALL_HINT, pytrace=False)
    folder = tmp_path_factory.mktemp("nodes")
    # Undone in reverse order, whatever step fails.
    with ExitStack() as cleanup, pytest.MonkeyPatch.context() as env:
        database = postgres.create_database()
        cleanup.callback(postgres.drop_database, database)
        store = shared_store(request, folder, cleanup)
        ports = [free_port(), free_port()]
        proxy = Nginx(ports, max_body=MAX_TOTAL + UPLOAD_OVERHEAD)
        cleanup.callback(proxy.stop)
        config = merge(base_config(mailbox, Setup("distributed")), {
            "site": {"base_url": proxy.url, "trusted_proxies": 1},
            "storage": {"database_url": postgres.url(database), **store},
            "transfer": {"max_total_bytes": MAX_TOTAL},
            # Every worker of both nodes ticks each minute; the lease lets one run the job.
            "retention": {"scheduler": True, "interval_minutes": 1},
            "download": {"max_attempts": 3},
            "verification": {"resend_cooldown_seconds": 0},
            "limits": {"verification_mails_per_address_per_hour": 3},
        })
        env.delenv("KOERIER_CONFIG", raising=False)
        env.setenv("KOERIER_SECRET_KEY", secrets.token_urlsafe(48))
        # requests and tuspy (which takes no CA of its own) trust the proxy's certificate.
        env.setenv("REQUESTS_CA_BUNDLE", str(proxy.cert))
        nodes = []
        for name, port in zip(("node-a", "node-b"), ports):
            nodes.append(LiveServer(instance_folder(folder / name, config), port=port))
            cleanup.callback(nodes[-1].stop)
        inspector = instance_folder(folder / "inspector", merge(config, {"retention": {"scheduler": False}}))
        app = create_app(instance_path=inspector)
        cleanup.callback(db.dispose, app)
        yield Cluster(request.param, proxy, nodes, app, mailbox)


def instance_folder(folder: Path, config: dict[str, Any]) -> Path:
    folder.mkdir()
    (folder / "config.toml").write_text(tomli_w.dumps(config))
    return folder


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def events(app: Flask, kind: str) -> list[Event]:
    with db.new_session(app) as session:
        return list(session.scalars(select(Event).where(Event.kind == kind).order_by(Event.id)))


def test_a_whole_transfer_walks_across_both_nodes_in_turn(cluster: Cluster) -> None:
    cluster.settle()
    mark = cluster.mark()
    marks = [len(log_lines(node)) for node in cluster.nodes]
    jan = cluster.sender("jan@zorg.example")
    # A client can put anything in X-Forwarded-For; nginx appends the address it sees.
    jan.client.environ_base["HTTP_X_FORWARDED_FOR"] = "203.0.113.7"
    # The largest file the policy allows, through the plain form: the proxy takes its body, streamed.
    data = os.urandom(MAX_TOTAL)
    sent = jan.send(files=[("dossier.pdf", data)], message="Zie bijlage.")

    anna = cluster.recipient()
    assert anna.unlock(sent.access_id("anna@gemeente.example"), PASSWORD).status_code == 302
    link = anna.file_links()["dossier.pdf"]
    assert sha256(anna.get(link).data) == sha256(data)
    archive = anna.get("/download/all")
    assert archive.status_code == 200
    with zipfile.ZipFile(io.BytesIO(archive.data)) as zipped:
        assert sha256(zipped.read("dossier.pdf")) == sha256(data)

    hops = cluster.hops(mark, lambda hops: bool(hops) and hops[-1].uri == "/download/all")
    assert all(hop.status < 500 for hop in hops)
    assert {hop.upstream for hop in hops} == {address(node) for node in cluster.nodes}
    assert all(a.upstream != b.upstream for a, b in pairwise(hops)), [(h.method, h.uri, h.upstream) for h in hops]

    # Each node logged its share.
    def logged() -> list[list[str]] | None:
        lines = [log_lines(node)[start:] for node, start in zip(cluster.nodes, marks)]
        return lines if sum(map(len, lines)) == len(hops) else None

    served = wait_for(logged, "the nodes' access logs")
    assert all(served)
    # The nodes see nginx's address (127.0.0.2); the audit trail has the
    # client's, which nginx added to X-Forwarded-For, not the one it made up.
    [created] = [e for e in events(cluster.app, "transfer_created") if e.actor == "jan@zorg.example"]
    assert created.ip == "127.0.0.1"
    # Neither the upload nor the downloads passed through a file on the proxy's disk.
    assert "buffered to a temporary file" not in cluster.proxy.errors()


def patches(cluster: Cluster, path: str, count: int) -> list[Hop]:
    """The first ``count`` PATCH requests to ``path`` (a tus upload) that nginx finished."""

    def to_path(hops: list[Hop]) -> list[Hop]:
        return [h for h in hops if h.method == "PATCH" and h.uri == path]

    return to_path(cluster.hops(0, lambda hops: len(to_path(hops)) >= count))[:count]


def test_a_tus_upload_cut_half_way_on_one_node_resumes_on_the_other(cluster: Cluster, tmp_path: Path) -> None:
    source = tmp_path / "scan.zip"
    expected = random_file(source, 3 * CHUNK + 777)
    kees = cluster.at_files_step("kees@zorg.example")
    headers = cluster.tus_headers(kees)
    # A relay in front of the proxy drops the connection half-way through the file, sent in one PATCH.
    relay = DroppingProxy(cluster.proxy.port, drop_after=source.stat().st_size // 2)
    via_relay = f"https://localhost:{urlsplit(relay.url).port}/send/uploads"
    first = TusClient(via_relay, headers=headers).uploader(
        file_path=str(source), metadata={"filename": "scan.zip"}, retries=0
    )
    with pytest.raises(Exception):  # noqa: B017 (tuspy's error for the dropped connection)
        first.upload()
    relay.close()
    assert relay.dropped
    path = urlsplit(first.url).path
    url = urljoin(cluster.url, path)
    [cut] = patches(cluster, path, 1)
    cut_on = cluster.node(cut)
    # Once the cut request has ended on its node, what it stored is committed.
    wait_for(lambda: any(f'"PATCH {path} ' in line for line in log_lines(cut_on)), "the cut request to end")
    stored = int(requests.head(url, headers=headers, timeout=60).headers["Upload-Offset"])
    # nginx passed the cut request's body on as it came: the node kept what arrived of it.
    assert 0 < stored < source.stat().st_size and stored % SEGMENT_SIZE == 0

    # The resuming client asks for the offset (on the same node), then sends the rest to the other, in chunks.
    cluster.next_to(cut_on)
    resumed = TusClient(cluster.url + "/send/uploads", headers=headers).uploader(
        file_path=str(source), url=url, chunk_size=CHUNK, retries=0
    )
    assert resumed.offset == stored
    resumed.upload()
    resume = patches(cluster, path, 2)[1]
    assert resume.status == 204 and resume.upstream == address(cluster.other(cut_on))

    anna = kees.open_uploaded()
    assert sha256(anna.get(anna.file_links()["scan.zip"]).data) == expected


def test_a_chunked_upload_streams_through_the_proxy_too(cluster: Cluster) -> None:
    """A body of unknown length (Transfer-Encoding: chunked), as a client streaming a file may send it."""
    data = os.urandom(3 * MiB)
    wim = cluster.at_files_step("wim@zorg.example")
    headers = cluster.tus_headers(wim)
    url = cluster.new_upload(headers, len(data), "stroom.zip")
    pieces = (data[i : i + MiB] for i in range(0, len(data), MiB))
    answer = requests.patch(
        url, data=pieces, timeout=60,
        headers={**headers, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"},
    )
    assert answer.status_code == 204 and answer.headers["Upload-Offset"] == str(len(data))
    # Passed on as it came (over HTTP/1.1), not first gathered whole in a temporary file.
    assert "buffered to a temporary file" not in cluster.proxy.errors()
    anna = wim.open_uploaded()
    assert anna.get(anna.file_links()["stroom.zip"]).data == data


@ON_THE_BUCKET
def test_an_upload_answered_unread_gets_its_answer_through_the_proxy(cluster: Cluster) -> None:
    """The portal answers some uploads without reading their bodies (a stale
    offset here; too many uploads, a bad token): nginx, still passing the body
    on, must pass that answer back to the client, not a 502 of its own."""
    bram = cluster.at_files_step("bram@zorg.example")
    headers = cluster.tus_headers(bram)
    url = cluster.new_upload(headers, 8 * MiB, "scan.zip")
    body = os.urandom(4 * MiB)
    stale = {**headers, "Upload-Offset": str(SEGMENT_SIZE), "Content-Type": "application/offset+octet-stream"}
    answers = [requests.patch(url, data=body, headers=stale, timeout=60) for _ in range(20)]
    assert [(a.status_code, a.headers.get("Upload-Offset")) for a in answers] == [(409, "0")] * 20


def test_a_download_session_opened_on_one_node_is_honoured_by_the_other(cluster: Cluster) -> None:
    data = os.urandom(3 * MiB + 5)
    sent = cluster.sender("lotte@zorg.example").send(files=[("foto.jpg", data)])
    anna = cluster.recipient()
    access_id = sent.access_id("anna@gemeente.example")
    opened_on = cluster.nodes[0]
    unlock = {"transaction_id": access_id, "password": PASSWORD}
    assert cluster.submit_on(opened_on, anna, "/download/", unlock, f"/download/?id={access_id}").status_code == 302
    # Every request from here needs the session; each goes to the other node than the one before.
    mark = cluster.mark()
    link = anna.file_links()["foto.jpg"]
    assert anna.get(link).data == data
    assert anna.get(link, headers={"Range": "bytes=1000000-1000099"}).data == data[1_000_000:1_000_100]
    hops = cluster.hops(mark, lambda hops: len(hops) == 3)
    assert [h.status for h in hops] == [200, 200, 206]
    assert hops[0].upstream == address(cluster.other(opened_on))
    assert {h.upstream for h in hops} == {address(node) for node in cluster.nodes}


def test_a_download_streams_through_the_proxy_as_fast_as_the_client_reads(cluster: Cluster) -> None:
    data = os.urandom(24 * MiB)
    sent = cluster.sender("piet@zorg.example").send(files=[("archief.zip", data)])
    anna = cluster.recipient()
    assert anna.unlock(sent.access_id("anna@gemeente.example"), PASSWORD).status_code == 302
    link = anna.file_links()["archief.zip"]
    with anna.client.session.get(cluster.url + link, stream=True, timeout=60) as download:
        assert download.status_code == 200
        assert len(download.raw.read(64 * 1024)) == 64 * 1024
        # Long enough for a buffering proxy to take the rest from the node
        # into a temporary file; an unbuffered one has the node wait.
        time.sleep(1)
    [hop] = [h for h in cluster.hops(0, lambda hops: any(h.uri == link for h in hops)) if h.uri == link]
    node = cluster.node(hop)

    def logged() -> str | None:
        return next((line for line in log_lines(node) if f"GET {link} " in line), None)

    line = wait_for(logged, "the node to end the download")
    # gunicorn logs the bytes it sent: the node stopped when the client stopped reading.
    sent_bytes = int(re.search(r'" 200 (\d+) ', line).group(1))
    assert sent_bytes < len(data) * 3 // 4
    assert "buffered to a temporary file" not in cluster.proxy.errors()


@ON_THE_BUCKET
def test_wrong_passwords_on_both_nodes_count_towards_one_lockout(cluster: Cluster) -> None:
    sent = cluster.sender("sanne@zorg.example").send()
    access_id = sent.access_id("anna@gemeente.example")
    guesser = cluster.recipient()
    a, b = cluster.nodes
    page = f"/download/?id={access_id}"
    answers = [
        text_of(cluster.submit_on(node, guesser, "/download/", {"transaction_id": access_id, "password": password}, page))
        for node, password in ((a, "fout-1"), (b, "fout-2"), (a, "fout-3"), (b, PASSWORD), (a, PASSWORD))
    ]
    assert "2 more attempts" in answers[0] and "1 more attempt " in answers[1]
    # Locked after the third, wherever the next guess goes, the right password included.
    assert all("Too many wrong attempts for this transaction ID" in answer for answer in answers[2:])
    locked = [e for e in events(cluster.app, "download_locked") if e.actor == "anna@gemeente.example"]
    assert len(locked) == 1 and locked[0].ip == "127.0.0.1"


@ON_THE_BUCKET
def test_verification_mails_count_across_both_nodes(cluster: Cluster) -> None:
    rita = cluster.sender("rita@zorg.example")
    person = {"name": rita.person.name, "phone": rita.person.phone, "email": rita.person.email}
    a, b = cluster.nodes
    # verification_mails_per_address_per_hour = 3
    answers = [cluster.submit_on(node, rita, "/send/", person) for node in (a, b, a, b)]
    assert [answer.status_code for answer in answers] == [302, 302, 302, 429]
    assert "Too many" in text_of(answers[-1])
    assert len(cluster.mailbox.to("rita@zorg.example")) == 3


def scheduler_log(node: LiveServer) -> tuple[int, int, int]:
    """Ticks of a node's scheduler started and finished, and runs of the clean-up job among them."""
    log = (node.instance / "gunicorn.log").read_text()
    finished = len(re.findall(r'Job "tick .*" executed successfully', log))
    return log.count('Running job "tick '), finished, log.count("clean-up: ")


@ON_THE_BUCKET
def test_the_clean_up_job_runs_once_per_interval_across_both_nodes(cluster: Cluster) -> None:
    def ticked_on_each() -> list[tuple[int, int, int]] | None:
        logs = [scheduler_log(node) for node in cluster.nodes]
        return logs if all(done for _, done, _ in logs) else None

    # Each node's scheduler started with its first request and ticks every minute.
    logs = wait_for(ticked_on_each, "a tick of each node's scheduler", timeout=300)
    (started_a, done_a, runs_a), (started_b, done_b, runs_b) = logs
    # One node ran the job at each of its ticks, the other at none of its.
    assert (done_a <= runs_a <= started_a and runs_b == 0) or (done_b <= runs_b <= started_b and runs_a == 0), logs


def stalled_patch(
    cluster: Cluster, url: str, headers: dict[str, str], offset: int, length: int, first: bytes
) -> http.client.HTTPSConnection:
    """A PATCH through the proxy that announces ``length`` bytes from ``offset``, sends ``first`` and waits."""
    parts = urlsplit(url)
    connection = http.client.HTTPSConnection(
        parts.hostname, parts.port, timeout=60, context=ssl.create_default_context(cafile=cluster.proxy.cert)
    )
    connection.putrequest("PATCH", parts.path)
    sent = {
        **headers, "Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream",
        "Content-Length": str(length),
    }
    for key, value in sent.items():
        connection.putheader(key, value)
    connection.endheaders()
    connection.send(first)
    return connection


def stored_past(app: Flask, upload_id: str, offset: int) -> bool:
    """Whether the upload's row says that its writer stores segments past
    ``offset``: in S3, a committed part; in the local store, the segment
    numbers it may use, committed before it uses them (docs/FORMAT.md)."""
    with db.new_session(app) as session:
        upload = session.get(Upload, upload_id)
        return upload is not None and max(upload.offset, upload.reserved_segments * SEGMENT_SIZE) > offset


def test_killing_a_node_mid_upload_loses_at_most_what_it_had_not_acknowledged(cluster: Cluster, tmp_path: Path) -> None:
    """Runs last: the killed node stays dead."""
    source = tmp_path / "scan.zip"
    expected = random_file(source, 3 * CHUNK + 777)
    data = source.read_bytes()
    joop = cluster.at_files_step("joop@zorg.example")
    headers = cluster.tus_headers(joop)
    uploader = TusClient(cluster.url + "/send/uploads", headers=headers).uploader(
        file_path=str(source), chunk_size=CHUNK, metadata={"filename": "scan.zip"}
    )
    uploader.upload_chunk()
    acknowledged = uploader.offset
    assert acknowledged == CHUNK

    victim = cluster.nodes[0]
    cluster.next_to(victim)
    # The next chunk: a part and a half of it arrive, then the client waits for more while the node dies.
    rest = data[acknowledged:]
    patch = stalled_patch(cluster, uploader.url, headers, acknowledged, len(rest), rest[: CHUNK + CHUNK // 2])
    path = urlsplit(uploader.url).path
    wait_for(lambda: stored_past(cluster.app, path.rsplit("/", 1)[1], acknowledged), "the node to store more bytes")
    victim.kill()
    patch.close()
    assert cluster.node(patches(cluster, path, 2)[1]) is victim

    resumed_from = resume_upload(uploader.url, headers, data)
    anna = joop.open_uploaded()
    assert sha256(anna.get(anna.file_links()["scan.zip"]).data) == expected
    if cluster.store == "local":
        # A node that dies in the middle of a request leaves the local store
        # unsure which segments it sealed, so the upload starts over at 0
        # under a fresh file key rather than risk a nonce twice
        # (docs/FORMAT.md, "Resumable uploads"); S3 keeps what was committed.
        assert resumed_from in (0, acknowledged)
    else:
        assert resumed_from >= acknowledged

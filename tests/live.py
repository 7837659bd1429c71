"""A portal served by gunicorn in its own process, and a flaky connection to it.

The server shares its instance folder (configuration, database, secret key,
blob store) with an in-process app, so a test can walk the wizard with the
fast test client and then send the bytes over real HTTP to the live server.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import requests

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def random_file(path: Path, size: int) -> str:
    """Writes ``size`` bytes of test data, no two 64 KiB blocks alike; returns their SHA-256."""
    digest = hashlib.sha256()
    with open(path, "wb") as fh:
        left = size
        while left:
            block = hashlib.sha512(digest.digest()).digest() * 1024  # 64 KiB, cheap and incompressible enough
            block = block[: min(left, len(block))]
            digest.update(block)
            fh.write(block)
            left -= len(block)
    return digest.hexdigest()


def wait_for(condition: Callable[[], T], what: str, timeout: float = 60) -> T:
    """Polls ``condition`` until it returns something true; the deadline only catches a hang."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def resume_upload(url: str, headers: dict[str, str], data: bytes) -> int:
    """Goes on with a tus upload of ``data`` as a client does after an error:
    asks for the offset, sends the rest from there, and asks again after a
    409, or after the wait a 423 asks for (the upload is still held by the
    request that failed). Returns the offset the server took the rest from."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        offset = int(requests.head(url, headers=headers, timeout=60).headers["Upload-Offset"])
        answer = requests.patch(
            url, data=data[offset:], timeout=120,
            headers={**headers, "Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"},
        )
        if answer.status_code == 204:
            assert answer.headers["Upload-Offset"] == str(len(data))
            return offset
        assert answer.status_code in (409, 423), answer.status_code
        if answer.status_code == 423:
            time.sleep(int(answer.headers["Retry-After"]))
    raise AssertionError("the upload never resumed")


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return False
    return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """``gunicorn wsgi:app`` on loopback."""

    def __init__(
        self, instance: Path, threads: int = 4, workers: int = 1, port: int | None = None, boot_seconds: float = 30,
    ) -> None:
        self.instance = instance
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.access_log = instance / "access.log"
        env = {**os.environ, "KOERIER_INSTANCE_PATH": str(instance)}
        env.pop("KOERIER_CONFIG", None)
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "gunicorn", "--workers", str(workers), "--threads", str(threads),
                "--bind", f"127.0.0.1:{self.port}", "--timeout", "120", "--no-control-socket",
                # Request lines as a proxy or an operator's log would keep them.
                "--access-logfile", str(self.access_log), "wsgi:app",
            ],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=open(instance / "gunicorn.log", "wb"),
            # Its own process group, which stop() ends with its workers.
            start_new_session=True,
        )
        deadline = time.monotonic() + boot_seconds
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("gunicorn did not start:\n" + self.log_tail(10_000))
            time.sleep(0.1)

    def _answers(self) -> bool:
        # Ours must be the one listening: another process (a parallel test's)
        # may hold the port, and would answer the probe instead.
        if f"Listening at: {self.url} ({self.process.pid})" not in (self.instance / "gunicorn.log").read_text():
            return False
        try:
            requests.get(self.url + "/", timeout=2)
        except (requests.ConnectionError, requests.Timeout):  # workers still booting
            return False
        return True

    def worker_pids(self) -> list[int]:
        return [int(p) for p in Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()]

    def worker_pid(self) -> int:
        [pid] = self.worker_pids()
        return pid

    def _status(self, field: str) -> int:
        for line in Path(f"/proc/{self.worker_pid()}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        raise AssertionError(f"no {field}")

    def peak_rss(self) -> int:
        """The worker's peak resident memory since the last reset, in bytes."""
        return self._status("VmHWM")

    def rss(self) -> int:
        """The worker's resident memory now, in bytes."""
        return self._status("VmRSS")

    def reset_peak_rss(self) -> None:
        Path(f"/proc/{self.worker_pid()}/clear_refs").write_text("5")

    def kill(self) -> None:
        """SIGKILL the master and its workers, as a machine that dies stops them: nothing runs on."""
        workers = self.worker_pids()
        # The master first, or it would start a new worker for each killed one.
        self.process.kill()
        self.process.wait(timeout=30)
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        # Gone once its port refuses connections: until the last worker has
        # exited, the kernel still accepts them on its listening socket.
        wait_for(lambda: not _accepts(self.port), "the killed server's port to close")

    def log_tail(self, chars: int = 3000) -> str:
        return (self.instance / "gunicorn.log").read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        # The test is over: nothing to finish. A graceful stop waits for idle
        # keep-alive connections and for requests a test left hanging.
        with contextlib.suppress(ProcessLookupError):  # all gone already
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)


class DroppingProxy:
    """Relays TCP to ``port`` and cuts the first connection that has carried
    ``drop_after`` bytes towards the server, like a Wi-Fi hand-over would."""

    def __init__(self, port: int, drop_after: int) -> None:
        self.target = port
        self.drop_after = drop_after
        self.dropped = False
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, counts: bool) -> None:
        carried = 0
        try:
            while data := source.recv(256 * 1024):
                if counts and not self.dropped and carried + len(data) >= self.drop_after:
                    self.dropped = True
                    sink.sendall(data[: self.drop_after - carried])
                    raise ConnectionAbortedError
                carried += len(data)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def close(self) -> None:
        self.listener.close()

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
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent


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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """``gunicorn wsgi:app`` on loopback."""

    def __init__(self, instance: Path, threads: int = 4, workers: int = 1, port: int | None = None) -> None:
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
        deadline = time.monotonic() + 30
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("gunicorn did not start:\n" + (instance / "gunicorn.log").read_text())
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

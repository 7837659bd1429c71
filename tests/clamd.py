"""A real ClamAV daemon for the tests, started and stopped by the tests.

Debian's ``clamav-daemon`` package puts ``clamd`` in /usr/sbin. No signature
updates can be downloaded here, so the daemon gets a database directory of
its own holding one hash signature: the EICAR test file's. With that tiny
database it starts in a fraction of a second, and answers
``stream: Eicar-Test-Signature.UNOFFICIAL FOUND`` for EICAR (the daemon
marks signatures that are not ClamAV's own "UNOFFICIAL") and ``stream: OK``
for anything else. It listens on a free loopback port and on a Unix socket
in its temporary folder, which also takes the files clamd writes a stream
to while it scans (in memory where there is room: the tests' plaintext
stays off the disk as well).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from .live import free_port

INSTALL_HINT = (
    "The scanning tests need ClamAV's daemon (clamd) from Debian's package: "
    "apt-get install --no-install-recommends clamav-daemon"
)
# The standard anti-virus test file (eicar.org): harmless, and detected as malware by design.
EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
SIGNATURE = "Eicar-Test-Signature"
FOUND_AS = f"{SIGNATURE}.UNOFFICIAL"
# Set explicitly, as docs tell operators to: the tests' portals set
# scan.max_stream_bytes to it.
STREAM_MAX_BYTES = 4 * 1024 * 1024
# The most clamd takes in one stream (and scans of one file): 4 GiB less a byte.
CLAMD_MAX_BYTES = 4 * 1024**3 - 1
# clamd's own defaults (clamd.conf(5)).
CLAMD_MAX_FILE_SIZE, CLAMD_MAX_SCAN_SIZE = 100 * 1024**2, 400 * 1024**2


def find_clamd() -> str | None:
    return shutil.which("clamd") or ("/usr/sbin/clamd" if os.access("/usr/sbin/clamd", os.X_OK) else None)


def _scratch(room: int) -> str | None:
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and shutil.disk_usage(shm).free >= room + 512 * 1024**2 else None


class ClamdServer:
    """``stream_max_bytes``: clamd's StreamMaxLength; its MaxFileSize and
    MaxScanSize at least as large, as the README tells operators (clamd says
    OK for what they make it skip)."""

    def __init__(self, clamd: str, stream_max_bytes: int = STREAM_MAX_BYTES) -> None:
        assert stream_max_bytes <= CLAMD_MAX_BYTES
        self.clamd = clamd
        self.stream_max_bytes = stream_max_bytes
        self.dir = Path(tempfile.mkdtemp(prefix="koerier-clamd-", dir=_scratch(stream_max_bytes)))
        self.port = free_port()
        self.socket_path = self.dir / "clamd.sock"
        self.log = self.dir / "clamd.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def tcp_address(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    @property
    def unix_address(self) -> str:
        return f"unix://{self.socket_path}"

    def config(self, **scan: object) -> dict[str, object]:
        """The ``[scan]`` settings of a portal that scans with this daemon."""
        return {"backend": "clamd", "clamd_address": self.tcp_address, "max_stream_bytes": self.stream_max_bytes, **scan}

    def start(self) -> "ClamdServer":
        database = self.dir / "database"
        database.mkdir()
        (database / "koerier-test.hdb").write_text(f"{hashlib.md5(EICAR).hexdigest()}:{len(EICAR)}:{SIGNATURE}\n")
        scratch = self.dir / "tmp"
        scratch.mkdir()
        conf = self.dir / "clamd.conf"
        conf.write_text(
            "Foreground yes\n"
            f"TCPSocket {self.port}\n"
            "TCPAddr 127.0.0.1\n"
            f"LocalSocket {self.socket_path}\n"
            f"DatabaseDirectory {database}\n"
            f"TemporaryDirectory {scratch}\n"
            f"StreamMaxLength {self.stream_max_bytes}\n"
            f"MaxFileSize {max(self.stream_max_bytes, CLAMD_MAX_FILE_SIZE)}\n"
            # What an archive's members add counts too.
            f"MaxScanSize {max(self.stream_max_bytes, CLAMD_MAX_SCAN_SIZE)}\n"
            # As the README tells operators: what the limits above (and MaxFiles,
            # MaxRecursion) make clamd skip is refused, not answered "OK".
            "AlertExceedsMax yes\n"
            # As the README offers operators: archives protected with a password are refused.
            "AlertEncryptedArchive yes\n"
            f"LogFile {self.log}\n"
            # Nothing to watch for: the database does not change.
            "SelfCheck 0\n"
            # Every stream really scanned: clamd remembers clean verdicts by
            # hash, and the benchmark's clamdscan, run after the portal on
            # the same bytes, would time a cache hit.
            "DisableCache yes\n"
        )
        self.resume()
        return self

    def resume(self) -> None:
        """Start the daemon (again, after ``halt``) and wait until it answers."""
        conf = self.dir / "clamd.conf"
        self.process = subprocess.Popen(
            [self.clamd, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True,
        )
        self._wait_ready()

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
                sock.sendall(b"zPING\0")
                return sock.recv(16) == b"PONG\0"
        except OSError:
            return False

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while not (self.ping() and self.socket_path.exists()):
            if self.process is None or self.process.poll() is not None or time.monotonic() > deadline:
                log = self.log.read_text() if self.log.exists() else ""
                self.stop()
                raise RuntimeError(f"clamd did not start:\n{log[-3000:]}")
            time.sleep(0.05)

    @contextlib.contextmanager
    def stalled(self) -> Iterator[None]:
        """The daemon frozen (SIGSTOP) for the block, as a busy or swapping one
        is: it takes connections and answers nothing until the block ends."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(self.process.pid, signal.SIGCONT)

    def halt(self) -> None:
        """Stop the daemon, as an outage does: at once, without a goodbye."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
        self.socket_path.unlink(missing_ok=True)

    def stop(self) -> None:
        self.halt()
        shutil.rmtree(self.dir, ignore_errors=True)

"""Malware scanning by ClamAV's daemon, clamd: bytes in, a verdict out.

The bytes go to clamd's ``INSTREAM`` command over TCP or a Unix socket
(clamd(8)): ``zINSTREAM\\0``, then chunks of ``<length: u32 big-endian><data>``,
then a zero length; clamd answers ``stream: OK``, ``stream: <signature>
FOUND``, or an error such as ``INSTREAM size limit exceeded``. Each chunk is
one of the caller's (a decrypted 64 KiB segment), so memory stays bounded
whatever the file's size.

The protocol is spoken here rather than through clamav-client (0.7.2),
whose ``instream`` sends every file in 1 KiB chunks (a copy and a system
call per KiB, and as many reads for clamd) and lets a failed send escape as
a bare ``OSError``; what is needed of the protocol is these few lines.

Plaintext handed to ``scan`` leaves this process only through the socket;
clamd itself writes a stream into its ``TemporaryDirectory`` while it scans
it, which is why the README asks operators to put that on a tmpfs.
"""

from __future__ import annotations

import logging
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from .settings import Scan, clamd_socket

log = logging.getLogger(__name__)

CLEAN, INFECTED, TOO_LARGE, UNAVAILABLE = "clean", "infected", "too_large", "unavailable"
# clamd met one of its limits inside the file (MaxScanSize, MaxFileSize,
# MaxRecursion, MaxFiles …) and, with AlertExceedsMax, says so as a
# detection: what lies past the limit was not scanned, which is not malware.
INCOMPLETE = "incomplete"
LIMIT_EXCEEDED = "Heuristics.Limits.Exceeded."
# An archive or document protected with a password, which clamd cannot look
# into (AlertEncryptedArchive, AlertEncryptedDoc): not checked completely
# either, and no malware; its detail ("Encrypted.Zip") says so.
ENCRYPTED = "Encrypted."
# A stored file's mark (StoredFile.scanned) besides CLEAN: let in without a
# verdict (scan.on_unavailable = "accept"), or not scanned, its rules had scanning off.
UNSCANNED, NOT_REQUIRED = "unscanned", "not_required"
# clamd's longest answer is a signature name in a line; anything longer is not clamd.
MAX_REPLY = 4096
_LENGTH = struct.Struct(">I")


@dataclass(frozen=True)
class Verdict:
    result: str
    # The signature clamd found (infected), the limit it met or ENCRYPTED… (incomplete), or why there is no verdict
    # (unavailable; for the log only).
    detail: str = ""
    # No verdict, but not for an outage: clamd took the whole file and did not finish
    # with it in time, which the file itself may cause. Never let in unscanned.
    slow: bool = False


class ScannerUnavailable(Exception):
    pass


class Clamd:
    """One configured clamd; a connection per command, as clamd expects.

    One per request: once a scan timed out, the request's other files get
    the same verdict at once, not another wait of ``timeout`` each (a
    stalled clamd held a post of 100 files for 100 minutes). Other failures
    cost no wait, and an error clamd answers for one file says nothing of
    the next.
    """

    def __init__(self, settings: Scan) -> None:
        self.address = settings.clamd_address
        self.target = clamd_socket(settings.clamd_address)
        self.timeout = settings.timeout_seconds
        self.failed: Verdict | None = None

    def _connect(self) -> socket.socket:
        if isinstance(self.target, tuple):
            return socket.create_connection(self.target, timeout=self.timeout)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self.target))
        except BaseException:
            sock.close()
            raise
        return sock

    def ping(self) -> None:
        """Raises ScannerUnavailable unless clamd answers PONG."""
        try:
            with self._connect() as sock:
                sock.sendall(b"zPING\0")
                reply = _reply(sock)
        except OSError as exc:
            raise ScannerUnavailable(f"scan.clamd_address: {self.address}: {exc}") from exc
        if reply != "PONG":
            raise ScannerUnavailable(f"scan.clamd_address: {self.address} answered {reply[:100]!r} to PING")

    def scan(self, chunks: Iterable[bytes | memoryview]) -> Verdict:
        """The verdict on the bytes of ``chunks``; an exception the chunks raise propagates."""
        return self._scan(chunks) if self.failed is None else self.failed

    def _scan(self, chunks: Iterable[bytes | memoryview]) -> Verdict:
        reply = ""
        try:
            with self._connect() as sock:
                sock.sendall(b"zINSTREAM\0")
                try:
                    for chunk in chunks:
                        # A zero length would end the stream early.
                        if len(chunk):
                            sock.sendall(_LENGTH.pack(len(chunk)) + chunk)
                    sock.sendall(_LENGTH.pack(0))
                except (BrokenPipeError, ConnectionResetError):
                    # clamd stops reading at its StreamMaxLength, and says so before it closes.
                    pass
                try:
                    reply = _reply(sock)
                except TimeoutError:
                    # A scan longer than the timeout (clamd's own MaxScanTime, 120 s by
                    # default, would answer Heuristics.Limits.Exceeded later) is what a
                    # file built to be slow to unpack gets: not an outage.
                    self.failed = Verdict(UNAVAILABLE, f"{self.address}: no verdict within {self.timeout} s", slow=True)
                    return self.failed
        except TimeoutError as exc:
            # clamd took neither the connection nor the file: stalled.
            self.failed = Verdict(UNAVAILABLE, f"{self.address}: {exc}")
            return self.failed
        except OSError as exc:
            return Verdict(UNAVAILABLE, f"{self.address}: {exc}")
        return _verdict(reply)


def _reply(sock: socket.socket) -> str:
    """One answer, up to its terminating NUL (or the end of the connection)."""
    data = bytearray()
    while not data.endswith(b"\0") and len(data) <= MAX_REPLY:
        received = sock.recv(MAX_REPLY)
        if not received:
            break
        data += received
    return data.rstrip(b"\0").decode("utf-8", errors="replace").strip()


def _verdict(reply: str) -> Verdict:
    if reply == "stream: OK":
        return Verdict(CLEAN)
    if reply.startswith("stream: ") and reply.endswith(" FOUND"):
        signature = reply.removeprefix("stream: ").removesuffix(" FOUND")
        if signature.startswith(LIMIT_EXCEEDED):
            return Verdict(INCOMPLETE, signature.removeprefix(LIMIT_EXCEEDED))
        if signature.startswith("Heuristics." + ENCRYPTED):
            return Verdict(INCOMPLETE, signature.removeprefix("Heuristics."))
        return Verdict(INFECTED, signature)
    if reply.startswith("INSTREAM size limit exceeded"):
        return Verdict(TOO_LARGE)
    return Verdict(UNAVAILABLE, f"clamd answered {reply[:200]!r}" if reply else "clamd closed the connection")

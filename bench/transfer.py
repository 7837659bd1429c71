"""Transfer speed and server memory, end to end, against plain baselines.

Run by hand (needs the test extras: gunicorn, requests)::

    .venv/bin/python bench/transfer.py                  # 1 GiB and 4 GiB
    .venv/bin/python bench/transfer.py --sizes 10G --interrupt
    .venv/bin/python bench/transfer.py --storage s3 --sizes 1G
    .venv/bin/python bench/transfer.py --scan --sizes 1G

Starts the portal under gunicorn on loopback (production Argon2 settings)
and a minimal WSGI baseline app under the same gunicorn settings. For each
size it walks the wizard over HTTP, uploads random data over tus, downloads
it as a single file and as a ZIP, checks SHA-256 both ways, and does the
same bytes through the baselines. Then 20 concurrent downloads of one file,
and 50 concurrent wrong-password posts against the Argon2 cap. Prints a
table; asserts nothing. With ``--interrupt`` the upload's connection is cut
half-way and the upload resumes from the offset the server reports.

With ``--storage s3`` the portal keeps its blobs in a bucket of a SeaweedFS
server started for the run (the test extra's ``weed``), and the baselines
are a plain boto3 ``upload_fileobj`` and ``download_fileobj`` of the same
bytes to the same server.

With ``--peer`` it measures the portal against the tus reference server
(``@tus/server`` with ``@tus/file-store``, bench/tus_peer.py): the same
files, the same tuspy client and chunk size (8 MiB, the files page's), each
side's upload and download, ``--runs`` times with the order alternating;
and the form upload (no JavaScript) against a plain multipart
receive-to-disk app, beside the plain baselines.

With ``--scan`` it measures malware scanning (``[scan]``, clamd): a clamd
started for the run with the tests' signature database (EICAR alone,
tests/clamd.py), the tus upload of the same file with scanning on and,
through a rule with ``scan = "off"``, with scanning off, beside clamd's
own client on the same bytes (``clamdscan --stream``, over the same Unix
socket as the portal).
"""

from __future__ import annotations

import argparse
import email
import email.policy
import hashlib
import html
import http.client
import io
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from base64 import b64encode
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import requests
from tusclient.client import TusClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.seaweed import INSTALL_HINT, SeaweedServer, find_weed  # noqa: E402  (after the path is set)
from tests.clamd import CLAMD_MAX_BYTES, ClamdServer, find_clamd  # noqa: E402
from tests.clamd import INSTALL_HINT as CLAMD_INSTALL_HINT  # noqa: E402
from bench.tus_peer import TusPeer  # noqa: E402

MiB = 1024 * 1024
CHUNK = MiB
# What the files page sends per PATCH.
TUS_CHUNK = 8 * MiB
PASSWORD = "Zonnebloem-Kade-1987!"
# With --scan: recipients here fall under a rule with scanning off.
UNSCANNED_DOMAIN = "unscanned.bench.example"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Gunicorn:
    def __init__(self, app: str, env: dict[str, str], workers: int, threads: int, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "gunicorn", "--workers", str(workers), "--threads", str(threads),
                "--bind", f"127.0.0.1:{self.port}", "--timeout", "600", "--no-control-socket", app,
            ],
            cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=open(log, "wb"),
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                requests.get(self.url + "/", timeout=5)
                break
            except (requests.ConnectionError, requests.Timeout):  # still booting, or a busy machine
                if self.process.poll() is not None or time.monotonic() > deadline:
                    sys.exit(f"gunicorn did not start, see {log}")
                time.sleep(0.2)

    def workers(self) -> list[int]:
        return [int(p) for p in Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()]

    def reset_peak(self) -> None:
        for pid in self.workers():
            Path(f"/proc/{pid}/clear_refs").write_text("5")

    def peak_rss(self) -> int:
        """The highest peak resident memory of any worker since the last reset."""
        peaks = []
        for pid in self.workers():
            status = Path(f"/proc/{pid}/status").read_text()
            peaks.append(int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) * 1024)
        return max(peaks)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU time the processes (all their threads) have used so far."""
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def kernel_work(pids: list[int]) -> tuple[float, int, int]:
    """The processes' system CPU seconds and minor page faults so far, and the
    machine's page-reclaim scans: where a run's extra CPU goes when a phase
    costs more than the same phase did before."""
    ticks = faults = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[12])
        faults += int(fields[7])
    vmstat = dict(line.split() for line in Path("/proc/vmstat").read_text().splitlines())
    scans = int(vmstat.get("pgscan_kswapd", 0)) + int(vmstat.get("pgscan_direct", 0))
    return ticks / os.sysconf("SC_CLK_TCK"), faults, scans


@contextmanager
def settled(work: Path, size: int) -> Iterator[None]:
    """Puts both sides of a timed write on the same footing: syncs what
    earlier phases left dirty, and feeds the page cache memory this machine
    holds while the block runs. Under a hypervisor that takes freed guest
    memory back (virtio-balloon free page reporting, as on Firecracker),
    writing into pages it took costs ~2 s more system CPU per GiB than
    writing into pages just freed (README, "Benchmarks"), and freed pages
    are taken within seconds; so a scratch file written before is cut down
    while the write runs, a little faster than any server here writes,
    and its pages, freed moments before, are the next ones handed out."""
    scratch = work / "settle.tmp"
    block = bytes(8 * MiB)
    with open(scratch, "wb") as fh:
        for _ in range(0, 2 * size, len(block)):
            fh.write(block)
    os.sync()
    done = threading.Event()

    def drip() -> None:
        with open(scratch, "r+b") as fh:
            left = os.fstat(fh.fileno()).st_size
            while left and not done.wait(0.05):
                left = max(0, left - 48 * MiB)
                os.ftruncate(fh.fileno(), left)

    dripping = threading.Thread(target=drip, daemon=True)
    dripping.start()
    try:
        yield
    finally:
        done.set()
        dripping.join()
        scratch.unlink()


def own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def random_file(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "wb") as fh:
        left = size
        while left:
            block = os.urandom(min(left, 16 * MiB))
            digest.update(block)
            fh.write(block)
            left -= len(block)
    return digest.hexdigest()


class FileSlice(io.RawIOBase):
    """Bytes ``start``.. of a file, read as they are sent; its length lets
    requests send a Content-Length instead of chunks."""

    def __init__(self, path: Path, start: int = 0, stop: int | None = None) -> None:
        self.fh = open(path, "rb")
        self.fh.seek(start)
        self.left = (path.stat().st_size if stop is None else stop) - start

    def __len__(self) -> int:
        return self.left

    def tell(self) -> int:
        # What requests subtracts from the length; without it, it sends chunks.
        return 0

    def read(self, size: int = -1) -> bytes:
        block = self.fh.read(min(self.left, CHUNK if size < 0 else size))
        self.left -= len(block)
        return block


class Portal(requests.Session):
    """A browser walking the wizard over HTTP; codes and IDs come from the outbox."""

    def __init__(self, url: str, outbox: Path) -> None:
        super().__init__()
        self.url, self.outbox = url, outbox

    def page(self, path: str) -> tuple[str, str]:
        text = self.get(self.url + path, timeout=30).text
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', text).group(1)
        return text, token

    def submit(self, path: str, data: dict[str, str]) -> requests.Response:
        _, token = self.page(path)
        r = self.post(self.url + path, data={"csrf_token": token, **data}, allow_redirects=False, timeout=60)
        if r.status_code not in (200, 302):
            sys.exit(f"{path}: HTTP {r.status_code}")
        return r

    def last_mail_to(self, address: str) -> str:
        for path in sorted(self.outbox.glob("*.eml"), reverse=True):
            message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            if address in message["To"]:
                return message.get_body(("plain",)).get_content()
        sys.exit(f"no mail to {address}")

    def to_files_step(self, sender: str, recipient: str) -> str:
        if self.submit("/send/", {"name": "Bench Mark", "phone": "0592 123456", "email": sender}).headers[
            "Location"
        ].endswith("/verify"):
            code = re.search(r"^\s+(\d{6,12})\s*$", self.last_mail_to(sender), re.M).group(1)
            self.submit("/send/verify", {"code": code})
        self.submit("/send/recipients", {"to": recipient})
        return self.page("/send/files")[1]

    def tus_upload(self, token: str, path: Path, interrupt: bool = False) -> None:
        size = path.stat().st_size
        headers = {"Tus-Resumable": "1.0.0", "X-CSRFToken": token}
        created = self.post(
            self.url + "/send/uploads", timeout=60,
            headers={**headers, "Upload-Length": str(size), "Upload-Metadata": "filename " + b64encode(path.name.encode()).decode()},
        )
        location = self.url + created.headers["Location"]
        if interrupt:
            cut_connection_after(location, headers, self.cookies, path, size // 2 + 12_345)
        # As a tus client does: ask for the offset, send from there, and on
        # 423 (the dropped request is still finishing) or 409, ask again.
        for _ in range(120):
            offset = int(self.head(location, headers=headers, timeout=30).headers["Upload-Offset"])
            r = self.patch(
                location, data=FileSlice(path, offset), timeout=3600,
                headers={**headers, "Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"},
            )
            if r.status_code not in (409, 423):
                break
            time.sleep(1)
        if interrupt:
            print(f"  connection cut at {size // 2 + 12_345:,} bytes; the server kept {offset:,}; resumed from there")
        if r.status_code != 204 or int(r.headers["Upload-Offset"]) != size:
            sys.exit(f"tus PATCH: HTTP {r.status_code} {r.text[:200]}")

    def tuspy_upload(self, token: str, path: Path) -> None:
        """As the files page uploads, with the tus client the peer gets too."""
        cookie = "; ".join(f"{c.name}={c.value}" for c in self.cookies)
        client = TusClient(self.url + "/send/uploads", headers={"X-CSRFToken": token, "Cookie": cookie})
        client.uploader(file_path=str(path), chunk_size=TUS_CHUNK, metadata={"filename": path.name}).upload()

    def form_upload(self, token: str, path: Path) -> None:
        """The files step without JavaScript: one multipart post."""
        body = MultipartFile(path, [("csrf_token", token), ("action", "upload")])
        r = self.post(self.url + "/send/files", data=body, headers={"Content-Type": body.content_type},
                      allow_redirects=False, timeout=3600)
        if r.status_code != 302:
            sys.exit(f"form upload: HTTP {r.status_code}")

    def start_transaction(self) -> str:
        files_page, token = self.page("/send/files")
        r = self.post(self.url + "/send/files", files={"csrf_token": (None, token), "files": ("", b""), "action": (None, "next")},
                      allow_redirects=False, timeout=60)
        if r.status_code != 302:
            sys.exit(f"files step: HTTP {r.status_code}")
        text, _ = self.page("/send/options")
        expires = re.search(r'name="expires_on"[^>]*value="([^"]*)"', text)
        self.submit("/send/options", {
            "expires_on": expires.group(1) if expires else (date.today() + timedelta(days=7)).isoformat(),
            "recipient_language": "en", "password_mode": "manual", "password": PASSWORD, "password_repeat": PASSWORD,
        })
        text, _ = self.page("/send/notification")
        subject = re.search(r'name="subject"[^>]*value="([^"]*)"', text).group(1)
        body = re.search(r'<textarea[^>]*name="body"[^>]*>\s*(.*?)</textarea>', text, re.S).group(1)
        self.submit("/send/notification", {"subject": html.unescape(subject), "body": html.unescape(body)})
        return re.search(r"id=([0-9A-Z-]+)", self.last_mail_to("ontvanger@bench.example")).group(1)

    def unlock(self, access_id: str) -> dict[str, str]:
        r = self.submit("/download/", {"transaction_id": access_id, "password": PASSWORD})
        if not r.headers.get("Location", "").endswith("/download/transfer"):
            sys.exit("unlock failed")
        page = self.get(self.url + "/download/transfer", timeout=30).text
        return dict(re.findall(r'<td class="file-name"[^>]*>([^<]*)</td>.*?<a href="(/download/file/[^"/]+)"', page, re.S))


class MultipartFile(io.RawIOBase):
    """A multipart/form-data body with ``fields`` and the file, read as it is sent."""

    def __init__(self, path: Path, fields: list[tuple[str, str]]) -> None:
        boundary = os.urandom(16).hex()
        self.content_type = f"multipart/form-data; boundary={boundary}"
        head = "".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n' for k, v in fields)
        head += (f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{path.name}"\r\n'
                 "Content-Type: application/octet-stream\r\n\r\n")
        self.parts = [io.BytesIO(head.encode()), FileSlice(path), io.BytesIO(f"\r\n--{boundary}--\r\n".encode())]
        self.left = sum(len(p.getvalue()) if isinstance(p, io.BytesIO) else len(p) for p in self.parts)

    def __len__(self) -> int:
        return self.left

    def tell(self) -> int:
        # As a browser posts a form: with a Content-Length (see FileSlice.tell).
        return 0

    def read(self, size: int = -1) -> bytes:
        while self.parts:
            block = self.parts[0].read(CHUNK if size < 0 else size)
            if block:
                self.left -= len(block)
                return block
            self.parts.pop(0)
        return b""


def cut_connection_after(url: str, headers: dict[str, str], cookies, path: Path, cut: int) -> None:  # type: ignore[no-untyped-def]
    """Sends a PATCH for the whole file but drops the connection after ``cut`` bytes."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=600)
    conn.putrequest("PATCH", parts.path)
    size = path.stat().st_size
    for key, value in {**headers, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream",
                       "Content-Length": str(size), "Cookie": "; ".join(f"{c.name}={c.value}" for c in cookies)}.items():
        conn.putheader(key, value)
    conn.endheaders()
    body = FileSlice(path, 0, cut)
    while block := body.read():
        conn.send(block)
    conn.sock.shutdown(socket.SHUT_RDWR)
    conn.close()


def timed_download(session: requests.Session, url: str, save_to: Path | None = None) -> tuple[float, str, int]:
    digest, size = hashlib.sha256(), 0
    sink = open(save_to, "wb") if save_to else None
    start = time.perf_counter()
    with session.get(url, stream=True, timeout=3600) as r:
        if r.status_code != 200:
            sys.exit(f"GET {url}: HTTP {r.status_code}")
        for block in r.iter_content(CHUNK):
            digest.update(block)
            size += len(block)
            if sink:
                sink.write(block)
    if sink:
        sink.close()
    return time.perf_counter() - start, digest.hexdigest(), size


def check_zip(path: Path, name: str, expected: str, size: int) -> None:
    """Python's zipfile reads the member back (ZIP64 records included) with a matching SHA-256."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(name)
        digest = hashlib.sha256()
        with archive.open(info) as member:  # checks the CRC-32 at the end
            while block := member.read(CHUNK):
                digest.update(block)
    if (info.file_size, digest.hexdigest()) != (size, expected):
        sys.exit("the ZIP's member does not match the original")


def mbps(size: int, seconds: float) -> float:
    return size / seconds / 1e6


def parse_size(text: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([MG]?)", text.strip().upper()).groups()
    return int(number) * {"": 1, "M": MiB, "G": 1024 * MiB}[unit]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", help="comma-separated sizes, e.g. 1G,4G or 512M (default 1G,4G; with --scan 1G)")
    parser.add_argument("--interrupt", action="store_true", help="cut each upload's connection half-way, then resume")
    parser.add_argument("--parallel", type=int, default=20, help="concurrent downloads of the smallest file (0: skip)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--storage", choices=("local", "s3"), default="local", help="where the portal keeps its blobs")
    parser.add_argument("--peer", action="store_true", help="against the tus reference server (@tus/server, via npm)")
    parser.add_argument("--runs", type=int, default=3, help="with --peer: runs per size, the order alternating")
    parser.add_argument("--scan", action="store_true", help="uploads with malware scanning on and off, against clamdscan")
    args = parser.parse_args()
    sizes = [parse_size(s) for s in (args.sizes or ("1G" if args.scan else "1G,4G")).split(",")]
    if args.scan and max(sizes) > CLAMD_MAX_BYTES:
        sys.exit(f"--scan: clamd takes a stream of at most {CLAMD_MAX_BYTES:,} bytes")
    if args.scan and shutil.which("clamdscan") is None:
        sys.exit("--scan needs clamd's own client: apt-get install --no-install-recommends clamdscan")

    work = Path(tempfile.mkdtemp(prefix="koerier-bench-"))
    instance, baseline_dir = work / "instance", work / "baseline"
    instance.mkdir()
    baseline_dir.mkdir()
    weed, storage = None, ""
    if args.storage == "s3":
        if (binary := find_weed()) is None:
            sys.exit(INSTALL_HINT)
        weed = SeaweedServer(binary).start()
        storage = "[storage]\n" + "".join(f'{key} = "{value}"\n' for key, value in weed.config(weed.create_bucket()).items())
    clamd, scan = None, ""
    if args.scan:
        if (binary := find_clamd()) is None:
            sys.exit(CLAMD_INSTALL_HINT)
        # Started once the servers are: its address goes into the portal's config now.
        # clamd's largest limits: what it scans of a file counts what it finds
        # inside too (random bytes hold an archive's or a program's signature
        # here and there), and a scan past MaxScanSize would be refused.
        clamd = ClamdServer(binary, stream_max_bytes=CLAMD_MAX_BYTES)
        scan = (f'[scan]\nbackend = "clamd"\nclamd_address = "{clamd.unix_address}"\nmax_stream_bytes = {max(sizes)}\n\n'
                f'[[rules]]\nname = "bench-unscanned"\nrecipients = ["*@{UNSCANNED_DOMAIN}"]\nscan = "off"\n')
    (instance / "config.toml").write_text(
        f"""
{storage}
[site]
base_url = "http://127.0.0.1"
name = "Bench"

[transfer]
max_total_bytes = {max(sizes) + MiB}

[limits]
failed_downloads_per_ip_per_hour = 100000

[retention]
scheduler = false

{scan}"""
    )
    env = {"KOERIER_INSTANCE_PATH": str(instance), "BASELINE_DIR": str(baseline_dir)}
    portal = Gunicorn("wsgi:app", env, args.workers, args.threads, work / "portal.log")
    baseline = Gunicorn("bench.baseline_app:app", env, args.workers, args.threads, work / "baseline.log")
    print(f"gunicorn: {args.workers} workers x {args.threads} threads; CPUs: {os.cpu_count()}; data in {work}; "
          f"blobs: {args.storage}")
    try:
        if args.peer:
            rows = against_peer(sizes, args.runs, portal, baseline, instance, work)
        elif clamd is not None:
            rows = against_clamdscan(sizes, portal, instance, work, clamd.start())
        else:
            rows = against_baselines(args, sizes, portal, baseline, instance, baseline_dir, work, weed)
    except BaseException:
        for log in ("portal.log", "baseline.log", "peer.log"):
            if (work / log).exists():
                print(f"--- {log} (last lines)", file=sys.stderr)
                print("\n".join((work / log).read_text().splitlines()[-15:]), file=sys.stderr)
        raise
    finally:
        portal.stop()
        baseline.stop()
        if weed is not None:
            weed.stop()
        if clamd is not None:
            clamd.stop()
        shutil.rmtree(work, ignore_errors=True)

    print_table(rows)


def against_baselines(
    args: argparse.Namespace, sizes: list[int], portal: Gunicorn, baseline: Gunicorn, instance: Path,
    baseline_dir: Path, work: Path, weed: SeaweedServer | None,
) -> list[tuple[str, str, str, str]]:
    """The walk, the tus upload and the downloads beside the plain baselines;
    parallel downloads; the Argon2 burst."""
    rows: list[tuple[str, str, str, str]] = []
    for size in sizes:
        label = f"{size / (1024 * MiB):g} GiB"
        source = work / "data.zip"
        print(f"{label}: writing random data")
        expected = random_file(source, size)

        # Baselines first, on the same bytes.
        if weed is None:
            start = time.perf_counter()
            requests.put(baseline.url + "/upload/data.zip", data=FileSlice(source), timeout=3600).raise_for_status()
            plain_up = mbps(size, time.perf_counter() - start)
            plain = requests.Session()
            seconds, _, _ = timed_download(plain, baseline.url + "/read/data.zip")
            plain_read = mbps(size, seconds)
            seconds, _, _ = timed_download(plain, baseline.url + "/sendfile/data.zip")
            plain_sendfile = mbps(size, seconds)
            (baseline_dir / "data.zip").unlink()
        else:
            plain_up, plain_read = boto3_baseline(weed, source, work / "boto3.out")

        sender = Portal(portal.url, instance / "outbox")
        token = sender.to_files_step("afzender@bench.example", "ontvanger@bench.example")
        portal.reset_peak()
        start = time.perf_counter()
        sender.tus_upload(token, source, args.interrupt)
        up = mbps(size, time.perf_counter() - start)
        up_rss = portal.peak_rss()
        access_id = sender.start_transaction()

        recipient = Portal(portal.url, instance / "outbox")
        links = recipient.unlock(access_id)
        portal.reset_peak()
        seconds, digest, got = timed_download(recipient, portal.url + links["data.zip"])
        if (digest, got) != (expected, size):
            sys.exit("single-file download does not match the original")
        down = mbps(size, seconds)
        archive = work / "download.zip"
        seconds, _, zip_size = timed_download(recipient, portal.url + "/download/all", save_to=archive)
        zipped = mbps(zip_size, seconds)
        down_rss = portal.peak_rss()
        check_zip(archive, "data.zip", expected, size)
        archive.unlink()

        if weed is None:
            rows += [
                (label, "upload (tus) vs plain write", f"{up:7.0f} / {plain_up:7.0f} MB/s", f"{up / plain_up:5.2f}"),
                (label, "download vs plain read", f"{down:7.0f} / {plain_read:7.0f} MB/s", f"{down / plain_read:5.2f}"),
                (label, "download vs sendfile", f"{down:7.0f} / {plain_sendfile:7.0f} MB/s", f"{down / plain_sendfile:5.2f}"),
            ]
        else:
            rows += [
                (label, "upload (tus) vs boto3 upload_fileobj", f"{up:7.0f} / {plain_up:7.0f} MB/s", f"{up / plain_up:5.2f}"),
                (label, "download vs boto3 download_fileobj", f"{down:7.0f} / {plain_read:7.0f} MB/s", f"{down / plain_read:5.2f}"),
            ]
        rows += [
            (label, "ZIP download (zipfile-checked)", f"{zipped:7.0f} MB/s", ""),
            (label, "peak worker RSS upload / download", f"{up_rss / 1e6:5.0f} / {down_rss / 1e6:5.0f} MB", ""),
        ]
        print(f"{label}: done, SHA-256 matches")
        for row in rows[-(4 if weed else 5):]:
            print("  " + "  ".join(row))
        if size == min(sizes):
            smallest = (recipient, links["data.zip"], size)
        source.unlink()

    if args.parallel:
        recipient, link, size = smallest
        portal.reset_peak()
        start = time.perf_counter()
        with ThreadPoolExecutor(args.parallel) as pool:
            results = list(pool.map(lambda _: timed_download(recipient, portal.url + link)[2], range(args.parallel)))
        seconds = time.perf_counter() - start
        ok = sum(1 for r in results if r == size)
        label = f"{args.parallel} parallel"
        rows.append((label, f"downloads of {size / (1024 * MiB):g} GiB ({ok}/{args.parallel} complete)",
                     f"{mbps(args.parallel * size, seconds):7.0f} MB/s total", ""))
        rows.append((label, "peak worker RSS", f"{portal.peak_rss() / 1e6:5.0f} MB", ""))
    rows += argon2_burst(portal)
    return rows


def print_table(rows: list[tuple[str, str, str, str]]) -> None:
    print()
    width = max(len(r[1]) for r in rows)
    print(f"{'size':<12} {'measure':<{width}}  {'portal / baseline':<28} ratio")
    for size_label, measure, figure, ratio in rows:
        print(f"{size_label:<12} {measure:<{width}}  {figure:<28} {ratio}")


def against_peer(
    sizes: list[int], runs: int, portal: Gunicorn, baseline: Gunicorn, instance: Path, work: Path
) -> list[tuple[str, str, str, str]]:
    """The portal beside @tus/server on the same files with the same tuspy
    client, and its form upload beside a plain multipart receive."""
    peer = TusPeer(free_port(), work / "peer", work / "peer.log")
    rows: list[tuple[str, str, str, str]] = []
    ratios: list[float] = []
    try:
        for size in sizes:
            source = work / "data.zip"
            print(f"{size / (1024 * MiB):g} GiB: writing random data")
            expected = random_file(source, size)
            for run in range(1, runs + 1):
                label = f"{size / (1024 * MiB):g} GiB #{run}"
                figures: dict[str, float] = {}

                def upload_to_portal(how: Callable[[Portal, str, Path], None], name: str) -> Portal:
                    """A sender walked to the files step; ``how`` uploads, timed, with the workers' peak RSS."""
                    sender = Portal(portal.url, instance / "outbox")
                    # A sender of its own: one sender's form drafts of the runs before (never started)
                    # would pass ``limits.open_drafts_per_sender``, and the oldest, with its blob of the
                    # whole size, would be discarded inside a timed upload, the portal's alone.
                    token = sender.to_files_step(f"afzender{run}.{name}@bench.example", "ontvanger@bench.example")
                    portal.reset_peak()
                    with settled(work, size):
                        kernel = kernel_work(portal.workers())
                        cpu, client_cpu, start = cpu_seconds(portal.workers()), own_cpu_seconds(), time.perf_counter()
                        how(sender, token, source)
                        figures[name] = mbps(size, time.perf_counter() - start)
                        figures[f"{name}_kernel"] = tuple(b - a for a, b in zip(kernel, kernel_work(portal.workers())))
                    figures[f"{name}_cpu"] = (cpu_seconds(portal.workers()) - cpu) / (size / (1024 * MiB))
                    figures[f"{name}_client_cpu"] = (own_cpu_seconds() - client_cpu) / (size / (1024 * MiB))
                    figures[f"{name}_rss"] = portal.peak_rss()
                    return sender

                def ours() -> None:
                    sender = upload_to_portal(Portal.tuspy_upload, "up")
                    recipient = Portal(portal.url, instance / "outbox")
                    links = recipient.unlock(sender.start_transaction())
                    seconds, digest, got = timed_download(recipient, portal.url + links["data.zip"])
                    if (digest, got) != (expected, size):
                        sys.exit("the portal's download does not match the original")
                    figures["down"] = mbps(size, seconds)

                def theirs() -> None:
                    client = TusClient(peer.url)
                    with settled(work, size):
                        kernel = kernel_work([peer.process.pid])
                        cpu, client_cpu, start = cpu_seconds([peer.process.pid]), own_cpu_seconds(), time.perf_counter()
                        uploader = client.uploader(
                            file_path=str(source), chunk_size=TUS_CHUNK, metadata={"filename": "data.zip"}
                        )
                        uploader.upload()
                        figures["peer_up"] = mbps(size, time.perf_counter() - start)
                        figures["peer_up_kernel"] = tuple(b - a for a, b in zip(kernel, kernel_work([peer.process.pid])))
                    figures["peer_up_cpu"] = (cpu_seconds([peer.process.pid]) - cpu) / (size / (1024 * MiB))
                    figures["peer_up_client_cpu"] = (own_cpu_seconds() - client_cpu) / (size / (1024 * MiB))
                    seconds, digest, got = timed_download(requests.Session(), uploader.url)
                    if (digest, got) != (expected, size):
                        sys.exit("the peer's download does not match the original")
                    figures["peer_down"] = mbps(size, seconds)

                def form() -> None:
                    upload_to_portal(Portal.form_upload, "form")
                    with settled(work, size):
                        start = time.perf_counter()
                        body = MultipartFile(source, [])
                        requests.post(baseline.url + "/form/data.zip", data=body,
                                      headers={"Content-Type": body.content_type}, timeout=3600).raise_for_status()
                        figures["plain_form"] = mbps(size, time.perf_counter() - start)

                def plain() -> None:
                    with settled(work, size):
                        start = time.perf_counter()
                        requests.put(baseline.url + "/upload/data.zip", data=FileSlice(source), timeout=3600).raise_for_status()
                        figures["plain_up"] = mbps(size, time.perf_counter() - start)
                    seconds, _, _ = timed_download(requests.Session(), baseline.url + "/read/data.zip")
                    figures["plain_down"] = mbps(size, seconds)

                order = [ours, theirs] if run % 2 else [theirs, ours]
                for step in (*order, form, plain):
                    step()
                for leftover in (*(work / "baseline").iterdir(), *(work / "peer").iterdir()):
                    leftover.unlink()
                first = "portal first" if run % 2 else "peer first"
                rows += [
                    (label, f"tus upload vs @tus/server ({first})",
                     f"{figures['up']:7.0f} / {figures['peer_up']:7.0f} MB/s", f"{figures['up'] / figures['peer_up']:5.2f}"),
                    (label, "download vs @tus/server GET",
                     f"{figures['down']:7.0f} / {figures['peer_down']:7.0f} MB/s", f"{figures['down'] / figures['peer_down']:5.2f}"),
                    (label, "form upload vs plain multipart to disk",
                     f"{figures['form']:7.0f} / {figures['plain_form']:7.0f} MB/s", f"{figures['form'] / figures['plain_form']:5.2f}"),
                    (label, "tus upload vs plain write",
                     f"{figures['up']:7.0f} / {figures['plain_up']:7.0f} MB/s", f"{figures['up'] / figures['plain_up']:5.2f}"),
                    (label, "download vs plain read",
                     f"{figures['down']:7.0f} / {figures['plain_down']:7.0f} MB/s", f"{figures['down'] / figures['plain_down']:5.2f}"),
                    (label, "tus upload CPU s/GiB, server (client)",
                     f"{figures['up_cpu']:5.2f} ({figures['up_client_cpu']:.2f}) / "
                     f"{figures['peer_up_cpu']:.2f} ({figures['peer_up_client_cpu']:.2f})", ""),
                    (label, "tus upload system CPU s, minor faults, reclaim scans",
                     "{:.2f} {} {} / {:.2f} {} {}".format(*figures["up_kernel"], *figures["peer_up_kernel"]), ""),
                    (label, "peak worker RSS tus / form upload",
                     f"{figures['up_rss'] / 1e6:5.0f} / {figures['form_rss'] / 1e6:5.0f} MB", ""),
                ]
                for row in rows[-8:]:
                    print("  " + "  ".join(row))
                ratios.append(figures["up"] / figures["peer_up"])
            source.unlink()
            if len(ratios) > 1:
                # One run's ratio moves with what the machine does during either upload; all of them say more.
                rows.append((
                    f"{size / (1024 * MiB):g} GiB", f"tus upload vs @tus/server, {len(ratios)} runs (geometric mean)",
                    f"lowest {min(ratios):.2f}, median {statistics.median(ratios):.2f}",
                    f"{statistics.geometric_mean(ratios):5.2f}",
                ))
                ratios.clear()
    finally:
        peer.stop()
    return rows


def against_clamdscan(
    sizes: list[int], portal: Gunicorn, instance: Path, work: Path, clamd: ClamdServer
) -> list[tuple[str, str, str, str]]:
    """The tus upload with scanning on and off, and ``clamdscan --stream`` on the same bytes."""
    rows: list[tuple[str, str, str, str]] = []
    for size in sizes:
        label = f"{size / (1024 * MiB):g} GiB"
        source = work / "data.zip"
        print(f"{label}: writing random data")
        random_file(source, size)
        figures: dict[str, float] = {}
        for name, recipient in (("on", "ontvanger@bench.example"), ("off", f"ontvanger@{UNSCANNED_DOMAIN}")):
            sender = Portal(portal.url, instance / "outbox")
            token = sender.to_files_step("afzender@bench.example", recipient)
            portal.reset_peak()
            with settled(work, size):
                start = time.perf_counter()
                sender.tus_upload(token, source)
                figures[name] = time.perf_counter() - start
            figures[f"{name}_rss"] = portal.peak_rss()
        os.sync()
        start = time.perf_counter()
        scanned = subprocess.run(
            ["clamdscan", f"--config-file={clamd.dir / 'clamd.conf'}", "--stream", "--no-summary", str(source)],
            capture_output=True, text=True, timeout=3600,
        )
        figures["clamdscan"] = time.perf_counter() - start
        if scanned.returncode != 0 or not scanned.stdout.strip().endswith("OK"):
            sys.exit(f"clamdscan: exit {scanned.returncode}: {scanned.stdout.strip()} {scanned.stderr.strip()}")
        on, off, own = (mbps(size, figures[k]) for k in ("on", "off", "clamdscan"))
        # What scanning adds to the upload, as a speed of its own: decrypting the blob into clamd.
        alone = mbps(size, figures["on"] - figures["off"])
        rows += [
            (label, "tus upload, scanning on vs off", f"{on:7.0f} / {off:7.0f} MB/s", f"{on / off:5.2f}"),
            (label, "tus upload, scanning on vs clamdscan --stream", f"{on:7.0f} / {own:7.0f} MB/s", f"{on / own:5.2f}"),
            (label, "its scan (on minus off) vs clamdscan --stream", f"{alone:7.0f} / {own:7.0f} MB/s", f"{alone / own:5.2f}"),
            (label, "peak worker RSS scanning on / off",
             f"{figures['on_rss'] / 1e6:5.0f} / {figures['off_rss'] / 1e6:5.0f} MB", ""),
        ]
        for row in rows[-4:]:
            print("  " + "  ".join(row))
        source.unlink()
    return rows


def boto3_baseline(weed: SeaweedServer, source: Path, sink: Path) -> tuple[float, float]:
    """MB/s of boto3's own upload_fileobj and download_fileobj of ``source``, in a bucket of their own."""
    client, bucket, size = weed.client(), weed.create_bucket(), source.stat().st_size
    try:
        start = time.perf_counter()
        with open(source, "rb") as fh:
            client.upload_fileobj(fh, bucket, "data.zip")
        up = mbps(size, time.perf_counter() - start)
        start = time.perf_counter()
        with open(sink, "wb") as fh:
            client.download_fileobj(bucket, "data.zip", fh)
        down = mbps(size, time.perf_counter() - start)
    finally:
        sink.unlink(missing_ok=True)
        weed.delete_bucket(bucket)
    return up, down


def argon2_burst(portal: Gunicorn) -> list[tuple[str, str, str, str]]:
    """50 wrong passwords at once, each for an unknown ID (so each costs a full Argon2id)."""
    clients = []
    for _ in range(50):
        client = Portal(portal.url, Path("/nonexistent"))
        clients.append((client, client.page("/download/")[1]))
    portal.reset_peak()
    answers: list[int] = []
    latencies: list[float] = []
    done = threading.Event()

    def probe() -> None:
        while not done.is_set():
            start = time.perf_counter()
            requests.get(portal.url + "/", timeout=60)
            latencies.append(time.perf_counter() - start)
            time.sleep(0.1)

    def attempt(pair) -> None:  # type: ignore[no-untyped-def]
        client, token = pair
        access_id = "-".join(os.urandom(4).hex().upper()[:4] for _ in range(7))
        r = client.post(portal.url + "/download/", data={"csrf_token": token, "transaction_id": access_id, "password": "wrong"},
                        allow_redirects=False, timeout=120)
        answers.append(r.status_code)

    watcher = threading.Thread(target=probe)
    watcher.start()
    start = time.perf_counter()
    with ThreadPoolExecutor(50) as pool:
        list(pool.map(attempt, clients))
    seconds = time.perf_counter() - start
    done.set()
    watcher.join()
    counts = {code: answers.count(code) for code in sorted(set(answers))}
    return [
        ("Argon2 x50", f"wrong passwords at once, answers {counts}", f"{seconds:6.1f} s total", ""),
        ("Argon2 x50", "start page during the burst, slowest", f"{max(latencies) * 1000:6.0f} ms", ""),
        ("Argon2 x50", "peak worker RSS", f"{portal.peak_rss() / 1e6:5.0f} MB", ""),
    ]


if __name__ == "__main__":
    main()

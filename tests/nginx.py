"""A real nginx in front of the portal's app servers, as README's Deploy section advises.

The tests start Debian's nginx (``apt-get install nginx``) themselves, in
the foreground, with a generated configuration in a temporary folder of its
own (logs, pid file, temporary files, certificate), listening for TLS on a
free loopback port. Under root its workers run as ``nobody``, as a packaged
nginx's run as ``www-data``.

The configuration is what an operator writes (README, "Deploy"): it
terminates TLS, forwards the client's address, scheme and host, streams
uploads to the app servers and downloads to the client without buffering
either on its disk, and alternates between the app servers. It connects to
them from another loopback address than the clients use (127.0.0.2), so a
test can tell the address a node saw from the one it was told.
"""

from __future__ import annotations

import datetime
import grp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .live import free_port

INSTALL_HINT = "nginx was not found; install it with: apt-get install nginx"
# Where nginx connects to the app servers from.
PROXY_ADDRESS = "127.0.0.2"
# The form post of the files step exactly (not the small forms below it, such
# as a file's Remove button), and the resumable endpoint with its uploads.
UPLOAD_LOCATIONS = ("= /send/files", "/send/uploads")


def find_nginx() -> str | None:
    """Debian installs nginx in /usr/sbin, which is not on an ordinary user's PATH."""
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


@dataclass
class Hop:
    """One request as nginx logged it: which app servers it went to, and what came back."""

    method: str
    uri: str
    status: int
    upstreams: list[str]

    @property
    def upstream(self) -> str:
        """The app server that answered (the last one tried)."""
        return self.upstreams[-1]


def self_signed(folder: Path, host: str) -> tuple[Path, Path]:
    """A certificate for ``host`` and 127.0.0.1, and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(host), x509.IPAddress(IPv4Address("127.0.0.1"))]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_file.chmod(0o600)
    return cert_file, key_file


def config(
    folder: Path, port: int, upstreams: list[int], max_body: int, cert: Path, key: Path, user: str | None
) -> str:
    """nginx.conf for the portal behind one TLS server, following README's Deploy section.

    ``max_body`` is the largest request the upload paths take: the policy's
    ``transfer.max_total_bytes`` plus what a form post adds around the files.
    """
    servers = "\n".join(f"        server 127.0.0.1:{p};" for p in upstreams)
    proxy = """
            proxy_pass http://koerier;"""
    return f"""\
{f"user {user};" if user else ""}
daemon off;
worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;

events {{
    worker_connections 256;
}}

http {{
    log_format hops '$request_method $request_uri $status $upstream_addr';
    access_log {folder}/access.log hops;
    client_body_temp_path {folder}/client_body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;

    # Round robin, the default: each request to the next app server.
    upstream koerier {{
{servers}
    }}

    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};

        # HTTP/1.1 to the app servers: with HTTP/1.0 nginx would buffer a
        # chunked request body whole before passing it on.
        proxy_http_version 1.1;
        proxy_bind {PROXY_ADDRESS};
        proxy_set_header Host $host;
        # site.trusted_proxies = 1 believes the last address, the one nginx adds.
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_set_header X-Forwarded-Host $host;

        # nginx's defaults, which README's Deploy section keeps: each is the
        # longest pause between two reads or writes, not a limit on a request.
        client_body_timeout 60s;
        proxy_send_timeout 60s;
        proxy_read_timeout 60s;
        send_timeout 60s;

        # Every other path: bodies buffered by nginx (the default), up to
        # 1 MiB like the portal's own forms.
        location / {{{proxy}
        }}
        # Uploads stream through as they arrive.
{"".join(f'''        location {where} {{
            client_max_body_size {max_body};
            proxy_request_buffering off;
            # Beyond scan.timeout_seconds: each file is scanned before the upload reads on or answers.
            proxy_send_timeout 300s;
            proxy_read_timeout 300s;{proxy}
        }}
''' for where in UPLOAD_LOCATIONS)}
        # Decrypted files go to the client as they come, never to a temporary file.
        location /download/ {{
            proxy_buffering off;{proxy}
        }}
    }}
}}
"""


class Nginx:
    """nginx in the foreground, over ``upstreams`` (app servers' ports on 127.0.0.1)."""

    def __init__(self, upstreams: list[int], max_body: int, host: str = "localhost") -> None:
        binary = find_nginx()
        if binary is None:
            raise RuntimeError(INSTALL_HINT)
        self.folder = Path(tempfile.mkdtemp(prefix="koerier-nginx-"))
        self.port = free_port()
        self.url = f"https://{host}:{self.port}"
        self.cert, key = self_signed(self.folder, host)
        self.access_log = self.folder / "access.log"
        self.error_log = self.folder / "error.log"
        user = None
        if os.geteuid() == 0:
            # nginx's master reads the key and opens the logs as root; its
            # workers need only their temporary folders, which it makes theirs.
            account = pwd.getpwnam("nobody")
            user = f"{account.pw_name} {grp.getgrgid(account.pw_gid).gr_name}"
            self.folder.chmod(0o711)
        self.conf = self.folder / "nginx.conf"
        self.conf.write_text(config(self.folder, self.port, upstreams, max_body, self.cert, key, user))
        self.process = subprocess.Popen(
            [binary, "-p", str(self.folder), "-c", str(self.conf), "-e", str(self.error_log)],
            stdout=subprocess.DEVNULL, stderr=open(self.folder / "stderr.log", "wb"),
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"nginx did not start:\n{self.errors()}") from None
                time.sleep(0.05)

    def errors(self) -> str:
        return "".join(log.read_text() for log in (self.folder / "stderr.log", self.error_log) if log.exists())

    def hops(self) -> list[Hop]:
        """Every request nginx has finished, in order."""
        hops = []
        for line in self.access_log.read_text().splitlines():
            method, uri, status, upstreams = line.split(" ", 3)
            hops.append(Hop(method, uri, int(status), [u.strip() for u in upstreams.split(",")]))
        return hops

    def stop(self) -> None:
        """A graceful shutdown (SIGQUIT): nginx finishes what it serves, closes idle connections and exits."""
        try:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGQUIT)
                self.process.wait(timeout=30)
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

"""A real PostgreSQL server for the tests, started and stopped by the tests.

It runs from the distribution's binaries (Debian: ``apt-get install
postgresql`` puts them in /usr/lib/postgresql/<version>/bin) on a free
loopback port, with its data directory in a temporary folder (in memory
where there is room). ``initdb`` and
``postgres`` refuse to run as root, so under root (CI containers) they run as
the ``postgres`` account the package creates, or as ``nobody``.

Tests get a fresh database each (``create_database``), usually a copy of a
template that already holds the current schema: copying it is cheaper than
running the migrations for every test. ``files`` and ``dump`` let a test
look at what the server keeps on disk.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import psycopg

from .live import free_port

INSTALL_HINT = (
    "PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found; "
    "install them with: apt-get install postgresql"
)
USER = "koerier"


def find_bindir() -> Path | None:
    """The directory that holds initdb: on PATH, or Debian's versioned folder (newest first)."""
    on_path = shutil.which("initdb")
    if on_path:
        # Through a symlink to the real folder, where pg_dump lives too.
        return Path(on_path).resolve().parent
    debian = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3].split(".")[0]))
    return Path(debian[-1]).parent if debian else None


def _server_account() -> pwd.struct_passwd | None:
    """Who runs the server: ourselves, or under root an unprivileged account."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("running as root, but there is no 'postgres' or 'nobody' account to run PostgreSQL as")


def _scratch() -> str | None:
    """Where the throwaway cluster lives: in memory (/dev/shm) when there is
    room, else the usual temporary folder. Each test's database is a copy of
    several megabytes, which a busy disk makes ten times slower."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and shutil.disk_usage(shm).free >= 2 * 1024**3 else None


class PostgresServer:
    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.port = free_port()
        self.base = Path(tempfile.mkdtemp(prefix="koerier-pg-", dir=_scratch()))
        self.data_dir = self.base / "data"
        self.socket_dir = self.base / "sockets"
        self.socket_dir.mkdir()
        self.log = self.base / "postgres.log"
        self.account = _server_account()
        if self.account is not None:
            for path in (self.base, self.socket_dir):
                os.chown(path, self.account.pw_uid, self.account.pw_gid)
        self._names = itertools.count(1)

    def _as_server(self, *args: str) -> None:
        """Run a server tool, as the unprivileged account when we are root."""
        extra: dict[str, Any] = {}
        if self.account is not None:
            extra = {"user": self.account.pw_uid, "group": self.account.pw_gid, "extra_groups": []}
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "HOME": str(self.base)}
        result = subprocess.run(args, cwd=self.base, env=env, capture_output=True, text=True, timeout=120, **extra)
        if result.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(args)} failed:\n{result.stdout}{result.stderr}{log}")

    def start(self) -> "PostgresServer":
        try:
            self._start()
        except Exception:
            shutil.rmtree(self.base, ignore_errors=True)
            raise
        return self

    def _start(self) -> None:
        self._as_server(
            str(self.bindir / "initdb"), "-D", str(self.data_dir), "-U", USER, "--auth=trust", "-E", "UTF8",
            "--no-locale", "--no-sync",
        )
        self.resume()

    def resume(self) -> None:
        """Start the server on its data directory (again, after ``halt``)."""
        options = (
            f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 "
            # Throwaway data: no need to wait for the disk.
            "-c fsync=off -c synchronous_commit=off -c max_connections=200 "
            # A database per test writes much WAL: kept to a few segments, for
            # the memory it takes and for the tests that read every file.
            "-c max_wal_size=64MB -c min_wal_size=32MB"
        )
        self._as_server(
            str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log), "-o", options, "-w", "-t", "60",
            "start",
        )

    def halt(self) -> None:
        """Stop the server, as an outage does: its connections end, its data stays."""
        self._as_server(str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop")

    def stop(self) -> None:
        try:
            self.halt()
        finally:
            shutil.rmtree(self.base, ignore_errors=True)

    def url(self, database: str) -> str:
        """The SQLAlchemy URL for ``storage.database_url``."""
        return f"postgresql+psycopg://{USER}@127.0.0.1:{self.port}/{database}"

    def _admin(self, sql: str) -> None:
        with psycopg.connect(host="127.0.0.1", port=self.port, user=USER, dbname="postgres", autocommit=True) as conn:
            conn.execute(sql)

    def create_database(self, template: str = "template1") -> str:
        name = f"test_{next(self._names)}"
        self._admin(f"CREATE DATABASE {name} TEMPLATE {template}")
        return name

    def drop_database(self, name: str) -> None:
        # FORCE ends the connections that the test's app and server still pool.
        self._admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def checkpoint(self) -> None:
        """Write every changed page to the data files (as a running server does in time)."""
        self._admin("CHECKPOINT")

    def dump(self, database: str, custom: bool = False) -> bytes:
        """``pg_dump`` of one database: plain SQL, or the custom format pg_restore reads (a backup)."""
        return subprocess.run(
            [
                str(self.bindir / "pg_dump"), "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, "-d", database,
                *(["--format=custom"] if custom else []),
            ],
            check=True, capture_output=True, timeout=120,
        ).stdout

    def restore(self, database: str, backup: bytes) -> None:
        """A custom-format dump loaded into ``database`` with pg_restore, as docs/DEPLOY.md restores a backup."""
        subprocess.run(
            [
                str(self.bindir / "pg_restore"), "--exit-on-error", "--no-owner", f"--role={USER}", "-h", "127.0.0.1",
                "-p", str(self.port), "-U", USER, "-d", database,
            ],
            input=backup, check=True, capture_output=True, timeout=120,
        )


class PostgresDatabase:
    """One test's own database on the shared server."""

    def __init__(self, server: PostgresServer, name: str) -> None:
        self.server = server
        self.name = name
        self.url = server.url(name)

    def files(self) -> list[Path]:
        """The server's data files that can hold this database's rows (its own
        folder, the shared catalogs, the WAL), with every page changed so far written to them.

        Other tests' databases are left out: the server may remove their files while they are read."""
        self.server.checkpoint()
        with psycopg.connect(host="127.0.0.1", port=self.server.port, user=USER, dbname=self.name) as conn:
            (oid,) = conn.execute("SELECT oid FROM pg_database WHERE datname = current_database()").fetchone()
        base = self.server.data_dir / "base"
        return [
            p for p in self.server.data_dir.rglob("*")
            if p.is_file() and not p.name.startswith("postmaster") and (p.parent.parent != base or p.parent.name == str(oid))
        ]

    def dump(self, custom: bool = False) -> bytes:
        return self.server.dump(self.name, custom)

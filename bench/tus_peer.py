"""The tus reference server as a peer for bench/transfer.py --peer.

``@tus/server`` with ``@tus/file-store`` (Node), installed with npm into a
cache folder of the bench's own the first time (never by the tests), and
started on loopback with its uploads in a folder of the run. It stores
plaintext and does not sync: the yardstick an encrypting, syncing portal
has to meet.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import requests

VERSIONS = {"@tus/server": "2.4.5", "@tus/file-store": "2.1.1"}
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "koerier-bench" / "tus-peer"

SERVER = """
import { Server } from "@tus/server";
import { FileStore } from "@tus/file-store";

const server = new Server({
  path: "/files",
  datastore: new FileStore({ directory: process.env.PEER_DIR }),
});
server.listen({ host: "127.0.0.1", port: Number(process.env.PEER_PORT) });

// After a download has gone out whole, the server's web stream is at times
// closed twice, and the error thrown for it ends the process (seen with
// srvx 0.11.16 to 0.11.22 under Node 20.20): logged, the server goes on.
process.on("uncaughtException", (error) => console.error("uncaught:", error));
"""


def install() -> Path:
    """The peer's folder, with its packages installed (once, into the cache)."""
    package = {"private": True, "type": "module", "dependencies": VERSIONS}
    wanted = json.dumps(package, indent=2)
    manifest = CACHE / "package.json"
    if not (CACHE / "node_modules" / "@tus" / "file-store").is_dir() or manifest.read_text() != wanted:
        if shutil.which("npm") is None or shutil.which("node") is None:
            sys.exit("--peer needs Node.js 20.19 or later and npm (Debian: apt install nodejs npm)")
        CACHE.mkdir(parents=True, exist_ok=True)
        manifest.write_text(wanted)
        print(f"installing {', '.join(f'{n}@{v}' for n, v in VERSIONS.items())} into {CACHE}")
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent"], cwd=CACHE, check=True)
    (CACHE / "server.mjs").write_text(SERVER)
    return CACHE


class TusPeer:
    def __init__(self, port: int, files: Path, log: Path) -> None:
        folder = install()
        files.mkdir(parents=True, exist_ok=True)
        self.url = f"http://127.0.0.1:{port}/files"
        self.process = subprocess.Popen(
            ["node", "server.mjs"], cwd=folder, env={**os.environ, "PEER_PORT": str(port), "PEER_DIR": str(files)},
            stdout=subprocess.DEVNULL, stderr=open(log, "wb"),
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.options(self.url, timeout=5)
                return
            except requests.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    sys.exit(f"@tus/server did not start, see {log}")
                time.sleep(0.2)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)

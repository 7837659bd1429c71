"""The baselines for bench/transfer.py: the least a WSGI app can do.

``PUT /upload/<name>`` writes the request body straight to disk (and syncs
it, as the portal does); ``POST /form/<name>`` does the same with the file
of a multipart form, parsed by Werkzeug as it streams (what Flask does for
any form upload); ``GET /read/<name>`` serves a file by reading it in
chunks; ``GET /sendfile/<name>`` hands it to the server's sendfile path.
Served by gunicorn exactly like the portal, so the ratio shows our code.
"""

from __future__ import annotations

import os
from pathlib import Path

from werkzeug.formparser import parse_form_data

ROOT = Path(os.environ.get("BASELINE_DIR", "/tmp/koerier-baseline"))
CHUNK = 256 * 1024


def app(environ, start_response):  # type: ignore[no-untyped-def]
    method, path = environ["REQUEST_METHOD"], environ["PATH_INFO"]
    kind, _, name = path.strip("/").partition("/")
    target = ROOT / Path(name).name
    if method == "PUT" and kind == "upload":
        stream = environ["wsgi.input"]
        with open(target, "wb") as fh:
            while chunk := stream.read(CHUNK):
                fh.write(chunk)
            fh.flush()
            os.fsync(fh.fileno())
        start_response("204 No Content", [])
        return []
    if method == "POST" and kind == "form":
        with open(target, "wb") as fh:
            # Every file part of the form goes to the one target file.
            parse_form_data(environ, stream_factory=lambda *args, **kwargs: fh)
            fh.flush()
            os.fsync(fh.fileno())
        start_response("204 No Content", [])
        return []
    if method == "GET" and kind in ("read", "sendfile") and target.is_file():
        headers = [("Content-Type", "application/octet-stream"), ("Content-Length", str(target.stat().st_size))]
        start_response("200 OK", headers)
        fh = open(target, "rb")
        if kind == "sendfile":
            return environ["wsgi.file_wrapper"](fh, CHUNK)
        return _chunks(fh)
    start_response("404 Not Found", [])
    return []


def _chunks(fh):  # type: ignore[no-untyped-def]
    with fh:
        while chunk := fh.read(CHUNK):
            yield chunk

"""Uploads in several requests over one kept-alive connection, as browsers send them."""

from __future__ import annotations

import base64
import http.client
import os
from urllib.parse import urlsplit

from .walker import Sender

MiB = 1024 * 1024


def test_resumable_chunks_reuse_one_connection(make_live, mailbox) -> None:
    """A chunk read to its Content-Length is a whole body: the connection stays usable for the next."""
    app, server = make_live()
    sender = Sender(app, mailbox)
    sender.personal()
    sender.verify()
    sender.recipients("anna@gemeente.example")
    headers = {"Tus-Resumable": "1.0.0", "Cookie": sender.cookie_header(), "X-CSRFToken": sender.upload_token()}
    data = os.urandom(4 * MiB + 5)
    # http.client, unlike requests, does not reconnect quietly when the server dropped the connection.
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    metadata = "filename " + base64.b64encode(b"a.zip").decode()
    connection.request("POST", "/send/uploads", headers={**headers, "Upload-Length": str(len(data)), "Upload-Metadata": metadata})
    created = connection.getresponse()
    created.read()
    location = urlsplit(created.headers["Location"]).path
    offset = 0
    while offset < len(data):
        chunk = data[offset : offset + MiB]
        patch = {**headers, "Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"}
        connection.request("PATCH", location, body=chunk, headers=patch)
        answer = connection.getresponse()
        answer.read()
        assert answer.status == 204
        offset = int(answer.headers["Upload-Offset"])
    connection.close()
    assert offset == len(data)
    recipient = sender.open_uploaded()
    assert recipient.get(recipient.file_links()["a.zip"]).data == data

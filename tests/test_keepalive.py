"""Uploads in several requests over one kept-alive connection, as browsers send them."""

from __future__ import annotations

import base64
import http.client
import os
import socket
from urllib.parse import urlsplit

from .walker import Sender

MiB = 1024 * 1024


class _OneReader:
    """Pipelined answers parsed from one buffered reader: http.client makes a
    reader per answer, which may read ahead into the next answer and take
    it away when it is closed (the answers to one write often arrive in one
    packet)."""

    def __init__(self, sock: socket.socket) -> None:
        self._fp = sock.makefile("rb")

    def makefile(self, mode: str) -> _OneReader:
        return self

    def readline(self, limit: int = -1) -> bytes:
        return self._fp.readline(limit)

    def read(self, size: int = -1) -> bytes:
        return self._fp.read(size)

    def readinto(self, buffer: bytearray) -> int:
        return self._fp.readinto(buffer)

    def close(self) -> None:
        pass  # the next answer is read from it


def _upload_on_one_connection(make_live, mailbox, length: int):  # type: ignore[no-untyped-def]
    """A sender at the files step, a connection of its own, and a resumable
    upload of ``length`` created over it: (sender, headers, connection, path)."""
    app, server = make_live()
    sender = Sender(app, mailbox)
    sender.personal()
    sender.verify()
    sender.recipients("anna@gemeente.example")
    headers = {"Tus-Resumable": "1.0.0", "Cookie": sender.cookie_header(), "X-CSRFToken": sender.upload_token()}
    # http.client, unlike requests, does not reconnect quietly when the server dropped the connection.
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    metadata = "filename " + base64.b64encode(b"a.zip").decode()
    connection.request("POST", "/send/uploads", headers={**headers, "Upload-Length": str(length), "Upload-Metadata": metadata})
    created = connection.getresponse()
    created.read()
    return sender, headers, connection, urlsplit(created.headers["Location"]).path


def test_resumable_chunks_reuse_one_connection(make_live, mailbox) -> None:
    """A chunk read to its Content-Length is a whole body: the connection stays usable for the next."""
    data = os.urandom(4 * MiB + 5)
    sender, headers, connection, location = _upload_on_one_connection(make_live, mailbox, len(data))
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


def test_chunks_sent_back_to_back_with_the_next_request_each_get_their_answer(make_live, mailbox) -> None:
    """The server reads a body straight from the socket (app/socket_body.py):
    bytes of the next request that arrive with a body stay where they belong."""
    data = os.urandom(2 * MiB + 7)
    sender, headers, connection, location = _upload_on_one_connection(make_live, mailbox, len(data))

    def patch(offset: int, body: bytes) -> bytes:
        fields = {**headers, "Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream",
                  "Content-Length": str(len(body)), "Host": "127.0.0.1"}
        return f"PATCH {location} HTTP/1.1\r\n".encode() + "".join(f"{k}: {v}\r\n" for k, v in fields.items()).encode() + b"\r\n" + body

    head = f"HEAD {location} HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\nCookie: {headers['Cookie']}\r\n\r\n".encode()
    # One write: a chunk short of a segment (nothing stored: the offset stays),
    # a HEAD, a chunk, a HEAD, the rest.
    together = patch(0, data[:100]) + head + patch(0, data[:MiB]) + head + patch(MiB, data[MiB:])
    connection.sock.sendall(together)
    answers = []
    replies = _OneReader(connection.sock)
    for method in ("PATCH", "HEAD", "PATCH", "HEAD", "PATCH"):
        answer = http.client.HTTPResponse(replies, method=method)  # type: ignore[arg-type]
        answer.begin()
        answer.read()
        answers.append((answer.status, answer.headers["Upload-Offset"]))
    connection.close()
    assert answers == [(204, "0"), (200, "0"), (204, str(MiB)), (200, str(MiB)), (204, str(len(data)))]
    recipient = sender.open_uploaded()
    assert recipient.get(recipient.file_links()["a.zip"]).data == data

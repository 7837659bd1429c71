"""Request bodies read straight from gunicorn's socket into the reader's buffer.

gunicorn hands a body to the app through two buffers of its own (the
request body's and the socket reader's), each a ``BytesIO`` that is written,
copied out whole and sliced at every read: an upload's bytes were copied
five or six times before they reached the encryption, and that was half
the time a resumable upload's chunk took. Werkzeug's request stream reads
with ``readinto`` when the input has one; this middleware gives gunicorn's
input one that receives into the caller's buffer directly.

Only a body of known length (``Content-Length``) that nothing has read yet
is replaced; chunked bodies and any other server keep their own input.
gunicorn's bookkeeping stays true: its read-ahead is used first (and what
belongs to the next request on the connection is put back), the length it
has left to read goes down with every read, so after the response it skips
exactly what the app did not read, and a failed read marks the body failed
so the connection is not reused.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from typing import Any

try:
    from gunicorn.http.body import Body, LengthReader
    from gunicorn.http.unreader import SocketUnreader
except ImportError:  # not under gunicorn: nothing to replace
    Body = LengthReader = SocketUnreader = None  # type: ignore[assignment,misc]

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class SocketBody(io.RawIOBase):
    def __init__(self, body: Any) -> None:
        super().__init__()
        self._body = body
        self._reader = body.reader
        self._unreader = body.reader.unreader

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        left = self._reader.length
        if left <= 0:
            return 0
        with memoryview(buffer) as whole:
            view = whole.cast("B")[:left]
            held = self._unreader.take_buffered()
            try:
                if held:
                    count = min(len(held), len(view))
                    view[:count] = held[:count]
                    if len(held) > count:
                        # The next request on this connection, sent ahead.
                        self._unreader.unread(held[count:])
                else:
                    count = self._unreader.sock.recv_into(view)
            except BaseException:
                self._body.failed = True
                raise
        self._reader.length -= count
        return count


def _replaceable(body: Any) -> bool:
    return (
        type(body) is Body
        and type(body.reader) is LengthReader
        and type(body.reader.unreader) is SocketUnreader
        and hasattr(body.reader.unreader, "take_buffered")
        and not body.buf.tell()
    )


def middleware(app: WSGIApp) -> WSGIApp:
    def read_from_socket(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        body = environ.get("wsgi.input")
        if _replaceable(body):
            environ["wsgi.input"] = SocketBody(body)
        return app(environ, start_response)

    return read_from_socket

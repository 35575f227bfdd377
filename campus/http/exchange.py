"""One request on a bounded connection, through Tornado's public interfaces.

:class:`Request` is the ``HTTPMessageDelegate`` Tornado feeds, :class:`Reply` the
``HTTPConnection`` the application answers on. Between them:

- request line and headers over :data:`MAX_HEADER_SIZE`, or a body declared over the
  server's limit, get a JSON 431 or 413 here (Tornado would close, or answer a bare 400);
- a target in absolute form (``GET http://host/path``) becomes the path it names;
- an answer sent before the request's body was read says ``Connection: close``: Tornado
  closes such a connection once the answer is out without saying so, and a client reusing
  it would get a reset;
- no answer carries Tornado's ``Server`` header (its name and version);
- the server hears when a request's headers arrive (its connection is busy from then on,
  never closed to make room), and when its answer starts to leave (its client must take it
  in within a deadline).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from tornado import httputil
from tornado.concurrent import Future
from tornado.iostream import IOStream

from campus.http.errors import raw_error
from campus.observability.requestid import HEADER, request_id_for

#: Request line and headers together; a request with more is answered 431.
MAX_HEADER_SIZE = 32 * 1024

StartLine = httputil.RequestStartLine | httputil.ResponseStartLine


class ConnectionState:
    """What the server knows of one client connection."""

    __slots__ = ("client", "responding_since", "served", "stream", "waiting_since")

    def __init__(self, stream: IOStream, client: str) -> None:
        self.stream = stream
        self.client = client  # the key it is counted under (campus.http.clients.client_key)
        self.served = 0  # requests whose headers arrived on it so far
        self.waiting_since = time.monotonic()  # for a request's headers
        self.responding_since: float | None = None  # an answer not yet handed to the kernel


class Reply(httputil.HTTPConnection):
    """The request's connection as the application sees it (Tornado's HTTP1Connection)."""

    def __init__(self, conn: Any, record: ConnectionState) -> None:
        self.conn, self.record = conn, record
        self.body_read = False
        # Read for every request (the client's address, the scheme): found here, not through
        # __getattr__, which Python reaches only after a failed lookup.
        self.context = conn.context

    def set_close_callback(self, callback: Callable[[], None] | None) -> None:
        self.conn.set_close_callback(callback)

    def write_headers(
        self, start_line: StartLine, headers: httputil.HTTPHeaders, chunk: bytes | None = None
    ) -> Future[None]:
        if "Server" in headers:
            del headers["Server"]
        if not self.body_read:
            headers["Connection"] = "close"
        self.record.responding_since = time.monotonic()
        return self.conn.write_headers(start_line, headers, chunk)  # type: ignore[no-any-return]

    def write(self, chunk: bytes) -> Future[None]:
        return self.conn.write(chunk)  # type: ignore[no-any-return]

    def finish(self) -> None:
        self.conn.finish()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)  # set_close_callback, context, detach, ...


class Request(httputil.HTTPMessageDelegate):
    """Sees each request on its way to the application; answers 431 and 413 itself."""

    def __init__(
        self,
        inner: httputil.HTTPMessageDelegate,
        reply: Reply,
        max_body: int,
        busy: Callable[[], None],
    ) -> None:
        self.inner, self.reply, self.max_body, self.busy = inner, reply, max_body, busy

    def headers_received(
        self, start_line: StartLine, headers: httputil.HTTPHeaders
    ) -> Awaitable[None] | None:
        self.busy()
        if header_size(start_line, headers) > MAX_HEADER_SIZE:
            self._refuse(431, "Request headers too large", headers)
        elif "Content-Length" in headers and declared_over(
            headers["Content-Length"], self.max_body
        ):
            self._refuse(413, "Request body too large", headers)
        else:
            if isinstance(start_line, httputil.RequestStartLine):
                start_line = origin_form(start_line, headers)
            return self.inner.headers_received(start_line, headers)
        return None

    def _refuse(self, status: int, message: str, headers: httputil.HTTPHeaders) -> None:
        """Answer and close, the stream taken from Tornado (``detach``, public): it would
        go on to read the body, or to answer a second time."""
        stream: IOStream = self.reply.conn.detach()
        answer = raw_error(status, message, request_id_for(headers.get(HEADER)))
        stream.write(answer).add_done_callback(lambda _: stream.close())

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        return self.inner.data_received(chunk)

    def finish(self) -> None:
        self.reply.body_read = True
        self.inner.finish()

    def on_connection_close(self) -> None:
        self.inner.on_connection_close()


def origin_form(
    start_line: httputil.RequestStartLine, headers: httputil.HTTPHeaders
) -> httputil.RequestStartLine:
    """A target in absolute form, which a server must accept (RFC 9112, 3.2.2), as the path
    it names; its authority replaces ``Host``."""
    target = start_line.path
    if not target.lower().startswith(("http://", "https://")):
        return start_line
    rest = target.partition("://")[2]
    end = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    authority, path = rest[:end].rpartition("@")[2], rest[end:]  # no user info in Host
    if authority:
        headers["Host"] = authority
    return start_line._replace(path=path if path.startswith("/") else "/" + path)


def declared_over(content_length: str, limit: int) -> bool:
    """Whether a Content-Length of ASCII digits says more than *limit* bytes.

    Anything else (not a number: Tornado refuses it with a 400) is False. Leading zeros are
    legal; a number too long to be small is never converted (int() refuses more than 4,300
    digits with an exception, and ``"²".isdigit()`` is true).
    """
    if not (content_length.isascii() and content_length.isdigit()):
        return False
    digits = content_length.lstrip("0")
    return len(digits) > len(str(limit)) or int(digits or "0") > limit


def header_size(start_line: StartLine, headers: httputil.HTTPHeaders) -> int:
    size = sum(len(str(part)) + 1 for part in start_line)
    return size + sum(len(name) + len(value) + 4 for name, value in headers.get_all())

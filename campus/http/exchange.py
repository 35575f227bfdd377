"""One request on a bounded connection, between Tornado and the application.

:class:`Watch` sees the request arrive, :class:`Exchange` sees the answer leave:

- request line and headers over :data:`MAX_HEADER_SIZE` are answered 431 here, as JSON, and
  the application never sees them;
- an answer sent before the request's body was read says ``Connection: close``: Tornado
  closes such a connection once the answer is out, and used to do so without saying it, so a
  client reusing it got a reset;
- no answer carries Tornado's ``Server`` header (its name and version);
- the connection's :class:`ConnectionState` learns when headers arrived (it is busy from
  then on) and when an answer started (its client must take it in within a deadline).
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Awaitable
from typing import Any

from tornado import httputil
from tornado.concurrent import Future
from tornado.iostream import IOStream

from campus.observability.requestid import HEADER, new_request_id, request_id_for

#: Request line and headers together; a request with more is answered 431.
MAX_HEADER_SIZE = 32 * 1024


def json_error(
    status: int, message: str, request_id: str | None = None
) -> tuple[bytes, dict[str, str]]:
    """A JSON error answer of our own, sent without the application: body and headers.

    It carries an ``X-Request-ID`` like every answer (a new one unless given).
    """
    body = json.dumps({"errorMessage": message}).encode()
    headers = {
        HEADER: request_id or new_request_id(),
        "Content-Type": "application/json; charset=UTF-8",
        "Content-Length": str(len(body)),
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
        "Connection": "close",
    }
    if status == 503:
        headers["Retry-After"] = "1"
    return body, headers


class ConnectionState:
    """What the server knows of one client connection."""

    __slots__ = ("client", "requests", "responding_since", "stream", "waiting_since")

    def __init__(self, stream: IOStream, client: str = "") -> None:
        self.stream = stream
        self.client = client  # the peer's address: connections are also counted per client
        self.requests = 0  # started on it so far
        self.waiting_since = time.monotonic()  # for a request's headers, while in Waiting
        self.responding_since: float | None = None  # a response not yet handed to the kernel


#: Connections waiting for a request's headers, the one waiting longest first.
Waiting = OrderedDict[ConnectionState, None]


class Exchange(httputil.HTTPConnection):
    """One request's connection as the application sees it (Tornado's HTTP1Connection)."""

    def __init__(
        self,
        conn: httputil.HTTPConnection,
        record: ConnectionState,
        waiting: Waiting,
    ) -> None:
        self._conn = conn
        self._record = record
        self._waiting = waiting
        self.body_read = False

    def headers_arrived(self) -> None:
        self._waiting.pop(self._record, None)  # busy now: never closed to make room

    def write_headers(
        self,
        start_line: httputil.RequestStartLine | httputil.ResponseStartLine,
        headers: httputil.HTTPHeaders,
        chunk: bytes | None = None,
    ) -> Future[None]:
        if "Server" in headers:
            del headers["Server"]  # Tornado's name and version: nobody's business
        if not self.body_read:
            # Tornado closes a connection whose request body it has not read once this
            # response is out; without this header the client would reuse it and get a reset.
            headers["Connection"] = "close"
        self._record.responding_since = time.monotonic()
        return self._conn.write_headers(start_line, headers, chunk)

    def write(self, chunk: bytes) -> Future[None]:
        return self._conn.write(chunk)

    def finish(self) -> None:
        self._conn.finish()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)  # set_close_callback, context, ...


class Watch(httputil.HTTPMessageDelegate):
    """Sees each request on its way to the application; answers 431 and 413 itself.

    Tornado would answer a body declared over its limit with a bare 400 and no body; ours
    is the JSON error every other answer has.
    """

    def __init__(
        self,
        inner: httputil.HTTPMessageDelegate,
        exchange: Exchange,
        max_body_size: int | None = None,
    ) -> None:
        self.inner = inner
        self.exchange = exchange
        self.max_body_size = max_body_size

    def headers_received(
        self,
        start_line: httputil.RequestStartLine | httputil.ResponseStartLine,
        headers: httputil.HTTPHeaders,
    ) -> Awaitable[None] | None:
        self.exchange.headers_arrived()
        if header_size(start_line, headers) > MAX_HEADER_SIZE:
            self._refuse(
                431, "Request Header Fields Too Large", "Request headers too large", headers
            )
            return None
        if self._declared_too_large(headers):
            self._refuse(413, "Content Too Large", "Request body too large", headers)
            return None
        if isinstance(start_line, httputil.RequestStartLine):
            start_line = origin_form(start_line, headers)
        return self.inner.headers_received(start_line, headers)

    def _declared_too_large(self, headers: httputil.HTTPHeaders) -> bool:
        limit = self.max_body_size
        return limit is not None and declared_over(headers.get("Content-Length", ""), limit)

    def _refuse(
        self, status: int, reason: str, message: str, headers: httputil.HTTPHeaders
    ) -> None:
        """Answer here, with Connection: close; the application never sees the request."""
        self.inner = httputil.HTTPMessageDelegate()
        reply = httputil.ResponseStartLine("HTTP/1.1", status, reason)
        body, fields = json_error(status, message, request_id_for(headers.get(HEADER)))
        self.exchange.write_headers(reply, httputil.HTTPHeaders(fields), body)
        self.exchange.finish()

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        return self.inner.data_received(chunk)

    def finish(self) -> None:
        self.exchange.body_read = True
        self.inner.finish()

    def on_connection_close(self) -> None:
        self.inner.on_connection_close()


def origin_form(
    start_line: httputil.RequestStartLine, headers: httputil.HTTPHeaders
) -> httputil.RequestStartLine:
    """A request target in absolute form (``GET http://host/path``), which a server must
    accept (RFC 9112, 3.2.2), as the path it names; its authority replaces ``Host``."""
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


def header_size(
    start_line: httputil.RequestStartLine | httputil.ResponseStartLine,
    headers: httputil.HTTPHeaders,
) -> int:
    size = sum(len(str(part)) + 1 for part in start_line)
    for name, value in headers.get_all():
        size += len(name) + len(value) + 4  # ": " and CRLF
    return size

"""Count requests in flight, so shutdown can wait for them and no longer.

Tornado's ``close_all_connections()`` closes every connection, busy or idle. To drain, we
count each request from its start until its response is finished (or its connection
dropped), by wrapping the connection object the handler finishes on. A request counts from
its headers: Tornado asks for the next request's delegate as soon as a keep-alive
connection is free, long before (and whether or not) another request arrives.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tornado import httputil


class InFlight:
    def __init__(self) -> None:
        self.count = 0

    def wrap(self, app: httputil.HTTPServerConnectionDelegate) -> _CountingServer:
        return _CountingServer(app, self)

    async def drained(self, grace: float) -> bool:
        """Wait until no request is in flight (True) or *grace* seconds pass (False)."""
        deadline = time.monotonic() + grace
        while self.count and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return self.count == 0


class _CountingServer(httputil.HTTPServerConnectionDelegate):
    def __init__(self, app: httputil.HTTPServerConnectionDelegate, tracker: InFlight) -> None:
        self.app = app
        self.tracker = tracker

    def start_request(
        self, server_conn: object, request_conn: httputil.HTTPConnection
    ) -> httputil.HTTPMessageDelegate:
        request = _Request(request_conn, self.tracker)
        delegate = self.app.start_request(server_conn, request)  # type: ignore[arg-type]
        return _Delegate(delegate, request)

    def on_close(self, server_conn: object) -> None:
        self.app.on_close(server_conn)


class _Request:
    """The request's connection, counting the request until its response is finished."""

    def __init__(self, conn: httputil.HTTPConnection, tracker: InFlight) -> None:
        self._conn = conn
        self._tracker = tracker
        self._open = False
        # The hot methods, bound once: each access would otherwise go through __getattr__.
        self.write_headers = conn.write_headers
        self.write = conn.write
        self.set_close_callback = conn.set_close_callback  # type: ignore[attr-defined]

    def started(self) -> None:
        if not self._open:
            self._open = True
            self._tracker.count += 1

    def done(self) -> None:
        if self._open:
            self._open = False
            self._tracker.count -= 1

    def finish(self) -> None:
        self.done()
        self._conn.finish()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


class _Delegate(httputil.HTTPMessageDelegate):
    def __init__(self, inner: httputil.HTTPMessageDelegate, request: _Request) -> None:
        self.inner = inner
        self.request = request

    def headers_received(
        self,
        start_line: httputil.RequestStartLine | httputil.ResponseStartLine,
        headers: httputil.HTTPHeaders,
    ) -> Any:
        self.request.started()
        return self.inner.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Any:
        return self.inner.data_received(chunk)

    def finish(self) -> None:
        self.inner.finish()

    def on_connection_close(self) -> None:
        self.request.done()
        self.inner.on_connection_close()

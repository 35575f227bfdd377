"""Request ids: one per request, echoed in ``X-Request-ID`` and in every log line it causes.

A client (or the proxy in front) may bring its own id: 1 to 64 characters of ``[A-Za-z0-9._-]``
are kept as they are, so one id follows a request through nginx, campus and a support ticket.
Anything else (too long, empty, spaces, several headers joined by commas) gets a new random
id: a client cannot put arbitrary text into our logs through it.

The id lives in a context variable, set when the request's headers arrive and cleared when
it ends. Tornado creates the handler's task after that, so the handler, its store calls and
everything they log see the id; the connection sees no stale one after the request ends.
"""

from __future__ import annotations

import random
import re
from contextvars import ContextVar
from typing import Any

import tornado.web
from tornado import httputil

HEADER = "X-Request-ID"
_VALID = re.compile(r"[A-Za-z0-9._-]{1,64}")

#: The id of the request being handled in this context; None outside any request.
current: ContextVar[str | None] = ContextVar("campus_request_id", default=None)


def new_request_id() -> str:
    """16 hex digits. A correlation id, not a secret: no system call for randomness.

    ``random`` reseeds itself in a forked child, so worker processes do not repeat each other.
    """
    return f"{random.getrandbits(64):016x}"


def request_id_for(header: str | None) -> str:
    """The id a request gets: its own ``X-Request-ID`` when valid, else a fresh one."""
    if header is not None and _VALID.fullmatch(header):
        return header
    return new_request_id()


def request_id() -> str:
    """This request's id (a fresh one outside a request, e.g. in a handler tested bare)."""
    return current.get() or new_request_id()


class _Tagged(httputil.HTTPMessageDelegate):
    """Sets the request's id for the time it is handled, around Tornado's own delegate."""

    __slots__ = ("inner",)

    def __init__(self, inner: httputil.HTTPMessageDelegate) -> None:
        self.inner = inner

    def headers_received(
        self,
        start_line: httputil.RequestStartLine | httputil.ResponseStartLine,
        headers: httputil.HTTPHeaders,
    ) -> Any:
        # `in` first: a missing header costs get() a raised and caught KeyError.
        current.set(request_id_for(headers[HEADER] if HEADER in headers else None))  # noqa: SIM401
        return self.inner.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Any:
        return self.inner.data_received(chunk)

    def finish(self) -> None:
        try:
            self.inner.finish()  # creates the handler's task, which keeps its copy of the id
        finally:
            current.set(None)

    def on_connection_close(self) -> None:
        try:
            self.inner.on_connection_close()
        finally:
            current.set(None)


class Application(tornado.web.Application):
    """Tornado's Application, with a request id set before any handler code runs."""

    def start_request(
        self, server_conn: object, request_conn: httputil.HTTPConnection
    ) -> httputil.HTTPMessageDelegate:
        return _Tagged(super().start_request(server_conn, request_conn))

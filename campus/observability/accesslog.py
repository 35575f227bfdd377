"""The end of every request: its metrics, and its one access-log line.

Tornado's default line carries the full URI, query string included; query strings are where
careless clients put tokens and passwords. Ours has the method, the path alone, the status,
the duration, the client address (the proxy's X-Forwarded-For hop only when trusted) and the
request id. Cookies, headers and bodies are never logged, so no session id, password or
secret can be.

The line is cheap: when the buffered writer (:mod:`~campus.observability.logwriter`, many
lines per system call) is the only one listening, as it is in a running campus, the line is
formatted straight from its fields and handed to it, with no LogRecord; otherwise a record
is built directly (no caller lookup) and goes through logging as usual.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

from tornado.httputil import HTTPServerRequest
from tornado.web import RequestHandler

from campus.observability import requestid
from campus.observability.logwriter import sole_writer
from campus.observability.metrics import Metrics

access_log = logging.getLogger("campus.access")

#: Longer paths are cut: a log line per request must stay a line, and a short one.
MAX_PATH = 200
_FORMAT = '%s "%s %s" %d %.1fms'
#: Printable, yet escaped in a path: they would fake a field's end or an escape.
_ESCAPED = ' "\\'


def printable(path: str) -> str:
    """The path with anything but printable ASCII escaped, so a request cannot forge lines
    or fields: spaces, quotes and backslashes too (a path's own "\\x0a" is "\\x5cx0a")."""
    if (
        path.isascii()
        and path.isprintable()
        and " " not in path
        and '"' not in path
        and "\\" not in path
        and len(path) <= MAX_PATH
    ):
        return path  # the usual case, without a loop over the characters
    text = "".join(
        c if " " < c < "\x7f" and c not in _ESCAPED else f"\\x{ord(c):02x}" for c in path
    )
    return text if len(text) <= MAX_PATH else text[: MAX_PATH - 3] + "..."


class RequestLog:
    """The application's ``log_function``: count the request, then log its line."""

    def __init__(
        self,
        *,
        access: bool = True,
        trust_proxy: bool = False,
        metrics: Metrics | None = None,
        routes: Mapping[type[RequestHandler], str] | None = None,
        client: Callable[[HTTPServerRequest], str] | None = None,
    ) -> None:
        self.access = access
        self.trust_proxy = trust_proxy
        #: The client's address behind a trusted proxy (the web layer knows how to read it).
        self.client = client
        self.metrics = metrics
        self.routes = dict(routes or {})

    def __call__(self, handler: RequestHandler) -> None:
        request, status = handler.request, handler.get_status()
        seconds = request.request_time()
        method = request.method or ""
        if self.metrics is not None:
            route = self.routes.get(type(handler), "other")
            self.metrics.request(route, method, status, seconds)
        if not self.access:
            return
        level = logging.INFO if status < 500 else logging.WARNING
        if not access_log.isEnabledFor(level):
            return
        if self.trust_proxy and self.client is not None:  # a header's text: escape it
            client = printable(self.client(request))
        else:  # the peer's address, as the socket gave it
            client = request.remote_ip or ""
        path = printable(request.path)
        millis = int(seconds * 10_000.0 + 0.5) / 10.0  # to 0.1 ms; round() costs more
        method = printable(method)
        fields = {
            "method": method,
            "path": path,
            "status": status,
            "duration_ms": millis,
            "client": client,
        }
        writer = sole_writer(access_log)
        if writer is not None:  # the usual case: the line, without a LogRecord
            writer.access(level, requestid.current.get(), fields)
            return
        args = (client, method, path, status, millis)
        access_log.handle(AccessRecord(level, args, requestid.current.get(), fields))


class AccessRecord(logging.LogRecord):
    """An access line's record, made without ``LogRecord.__init__``'s per-record lookups
    (caller's file name, thread, process): an access line names none of them, and they were
    a third of its cost. Every attribute a handler or formatter may read is set all the same.
    """

    def __init__(
        self, level: int, args: tuple[Any, ...], request_id: str | None, fields: dict[str, Any]
    ) -> None:
        now = time.time()
        self.__dict__.update(_CONSTANT_FIELDS)
        self.levelno = level
        self.levelname = logging.getLevelName(level)
        self.args = args
        self.created = now
        self.msecs = (now - int(now)) * 1000.0
        self.relativeCreated = (now - _STARTED) * 1000.0
        self.request_id = request_id
        self.fields = fields


_STARTED: float = getattr(logging, "_startTime", time.time())
_CONSTANT_FIELDS: dict[str, Any] = {
    "name": access_log.name,
    "msg": _FORMAT,
    "pathname": __file__,
    "filename": os.path.basename(__file__),
    "module": "accesslog",
    "lineno": 0,
    "funcName": "__call__",
    "exc_info": None,
    "exc_text": None,
    "stack_info": None,
    "thread": None,
    "threadName": None,
    "processName": None,
    "process": None,
    "taskName": None,
}

"""The JSON error every answer of campus has, written in one place.

The application's handlers (:mod:`campus.web.handlers.base`) and the server's own answers
to requests no handler sees (a connection past a limit, headers too large, a request Tornado
cannot parse) both build their body here.
"""

from __future__ import annotations

import json
from http import HTTPStatus

from campus.observability.requestid import HEADER, new_request_id

#: Seconds a client should wait before retrying after a 503.
RETRY_AFTER = 1


def error_body(message: str, **extra: str) -> bytes:
    """``{"errorMessage": message}``, with *extra* fields beside it (``/healthz``'s status)."""
    return json.dumps({**extra, "errorMessage": message}).encode()


def raw_error(status: int, message: str, request_id: str | None = None) -> bytes:
    """A whole answer, status line to body, for a connection about to be closed.

    It carries an ``X-Request-ID`` like every answer (a new one unless given).
    """
    body = error_body(message)
    headers = {
        HEADER: request_id or new_request_id(),
        "Content-Type": "application/json; charset=UTF-8",
        "Content-Length": str(len(body)),
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
        "Connection": "close",
    }
    if status == HTTPStatus.SERVICE_UNAVAILABLE:
        headers["Retry-After"] = str(RETRY_AFTER)
    lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n{lines}\r\n".encode() + body

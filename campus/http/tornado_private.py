"""Everything campus (outside :mod:`campus.session`) relies on in Tornado beyond its
documented API, each named with why. tests/http/test_tornado_private.py checks each one, and
CI runs it on the newest Tornado that pyproject.toml allows.

1. ``HTTP1ServerConnection.stream``: ``HTTPServerConnectionDelegate.start_request`` gets the
   long-lived connection as "an opaque object"; the server reads its stream to know which of
   its connections a request arrives on, and whether that connection is closed already.
2. What ``HTTP1Connection`` writes to the stream, unasked, when it cannot parse a request:
   a bare ``HTTP/1.1 400 Bad Request`` with no header and no body. No delegate hears of the
   request, so the only place to answer it as campus answers everything (JSON, with an
   ``X-Request-ID``) is that one write on the stream, compared by its bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from tornado.http1connection import HTTP1ServerConnection
from tornado.iostream import IOStream

#: What Tornado writes, then closes, on a request it cannot parse.
BARE_400 = b"HTTP/1.1 400 Bad Request\r\n\r\n"


def stream_of(server_conn: object) -> IOStream:
    """The stream of the connection a request arrives on (1.)."""
    return cast(HTTP1ServerConnection, server_conn).stream


def replace_bare_400(stream: IOStream, answer: Callable[[], bytes]) -> None:
    """Make *stream* send ``answer()`` where Tornado writes its bare 400 (2.).

    Only that write is changed: its length is compared first, the bytes only then.
    """
    write = stream.write

    def write_or_replace(data: bytes | memoryview, *args: Any, **kwargs: Any) -> Any:
        if len(data) == len(BARE_400) and bytes(data) == BARE_400:
            data = answer()
        return write(data, *args, **kwargs)

    setattr(stream, "write", write_or_replace)  # noqa: B010 (this instance only)

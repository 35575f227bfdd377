"""What campus.http.tornado_private relies on in Tornado, checked on the Tornado installed.

CI runs this file on the newest Tornado pyproject.toml allows (.ci/run): a release that
changes one of these facts fails here, by name, before it can fail in production.
"""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

from tornado import httputil
from tornado.httpserver import HTTPServer
from tornado.iostream import IOStream
from tornado.netutil import bind_sockets

from campus.http.errors import raw_error
from campus.http.tornado_private import BARE_400, replace_bare_400, stream_of


class Answer(httputil.HTTPServerConnectionDelegate):
    """Answers every request 200; notes the connection object each request arrived on."""

    def __init__(self) -> None:
        self.server_conns: list[object] = []

    def start_request(
        self, server_conn: object, request_conn: httputil.HTTPConnection
    ) -> httputil.HTTPMessageDelegate:
        self.server_conns.append(server_conn)
        return Ok(request_conn)


class Ok(httputil.HTTPMessageDelegate):
    def __init__(self, conn: httputil.HTTPConnection) -> None:
        self.conn = conn

    def finish(self) -> None:
        start = httputil.ResponseStartLine("HTTP/1.1", 200, "OK")
        headers = httputil.HTTPHeaders({"Content-Length": "0"})
        self.conn.write_headers(start, headers)
        self.conn.finish()


class Recording(HTTPServer):
    """A plain HTTPServer that keeps the streams it is given (and may adapt them)."""

    def initialize(self, *args: Any, adapt: bool = False, **kwargs: Any) -> None:
        super().initialize(*args, **kwargs)
        self.adapt = adapt
        self.streams: list[IOStream] = []

    def handle_stream(self, stream: IOStream, address: tuple[Any, ...]) -> None:
        self.streams.append(stream)
        if self.adapt:
            replace_bare_400(stream, lambda: raw_error(400, "Malformed request"))
        super().handle_stream(stream, address)


async def send(port: int, request: bytes) -> bytes:
    """*request* on a new connection; everything the server sends until it closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return answer


def serve(delegate: Answer, *, adapt: bool) -> tuple[Recording, int]:
    sockets = bind_sockets(0, "127.0.0.1", family=socket.AF_INET)
    server = Recording(delegate, adapt=adapt)
    server.add_sockets(sockets)
    return server, sockets[0].getsockname()[1]


def test_a_request_arrives_on_a_connection_whose_stream_is_the_one_accepted() -> None:
    async def scenario() -> None:
        delegate = Answer()
        server, port = serve(delegate, adapt=False)
        answer = await send(port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 200 OK")
        assert delegate.server_conns, "start_request was never called"
        assert stream_of(delegate.server_conns[0]) is server.streams[0]
        server.stop()
        await server.close_all_connections()

    asyncio.run(scenario())


def test_tornado_answers_an_unparsable_request_with_exactly_the_bare_400() -> None:
    async def scenario() -> None:
        server, port = serve(Answer(), adapt=False)
        assert await send(port, b"GARBAGE\r\n\r\n") == BARE_400
        server.stop()

    asyncio.run(scenario())


def test_the_bare_400_is_replaced_by_the_json_one_and_nothing_else_is() -> None:
    async def scenario() -> None:
        server, port = serve(Answer(), adapt=True)
        answer = await send(port, b"GARBAGE\r\n\r\n")
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400 ") and b"X-Request-ID: " in head
        assert json.loads(body) == {"errorMessage": "Malformed request"}
        ok = await send(port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert ok.startswith(b"HTTP/1.1 200 OK")
        server.stop()

    asyncio.run(scenario())

"""Bounds on client connections: how many there are, and how long each may take.

Tornado's own options hold the time a connection may wait for a request's headers
(``idle_connection_timeout``: ``idle_timeout``), the time a body may take (``body_timeout``)
and the sizes (``max_header_size``, ``max_body_size``). :class:`BoundedServer` adds what they
cannot:

- ``header_timeout``: a new connection must have sent its first request's headers within it;
- ``body_timeout`` also bounds an answer: a client that does not take it in is cut;
- ``max_connections``, lowered to what the open-files limit leaves after a reserve: past it,
  the connection that has waited longest (over a second) for a request's headers makes room
  (as nginx reuses idle keep-alive connections), and if none has, the new connection gets a
  503 with ``Connection: close`` and is closed;
- ``max_connections_per_client``: busy connections are never closed to make room, so
  without it one client sending bodies slowly could hold every slot (not applied behind a
  trusted proxy: the proxy is the only peer and bounds its own clients);
- accept() failing for want of descriptors pauses accepting for a moment, where Tornado
  would retry at once, forever;
- a request Tornado cannot parse gets the JSON 400 every answer has, not a bare status line.

Troubles are logged once per event; the log writer sums repeats up (no flood). Each request
goes through :mod:`campus.http.exchange`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import resource
import socket
import time
from collections import OrderedDict
from collections.abc import Iterable
from functools import partial
from typing import Any

from tornado import httputil
from tornado.httpserver import HTTPServer
from tornado.ioloop import IOLoop, PeriodicCallback
from tornado.iostream import IOStream

from campus.config import ServerConfig
from campus.http.clients import client_key
from campus.http.errors import raw_error
from campus.http.exchange import ConnectionState, Reply, Request
from campus.http.tornado_private import replace_bare_400, stream_of

log = logging.getLogger("campus.connections")

#: Past this much without the end of the headers, Tornado closes the connection unanswered.
HARD_HEADER_SIZE = 64 * 1024
#: Largest request body read at all; /login refuses anything over 64 KiB itself.
MAX_BODY_SIZE = 1024 * 1024
#: Descriptors kept back from client connections for Redis, static files, logs, ...
FD_RESERVE = 32
#: accept() errors that mean "no descriptor or memory right now": wait instead of retrying.
EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
PAUSE = 0.05  # seconds without accept() once it failed so
#: At the connection limit, one that has waited this long for a request's headers (seconds)
#: is closed to make room for a new one.
EVICT_AFTER = 1.0
SWEEP_INTERVAL_MS = 1000  # how often the timeouts Tornado does not keep are checked


def connection_cap(wanted: int) -> int:
    """*wanted*, or fewer if the open-files limit would run out first: a tenth of it (at least
    :data:`FD_RESERVE`) stays free, so that connections past the cap can still be refused."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(1, min(wanted, soft - max(FD_RESERVE, soft // 10)))


class _Listener(socket.socket):
    """A listening socket whose accept(), out of descriptors, says "nothing to accept": the
    one error Tornado's accept handler takes quietly. Any other escapes to the event loop,
    which logs it and calls the handler again at once, forever."""

    server: BoundedServer

    def accept(self) -> tuple[socket.socket, Any]:
        try:
            return super().accept()
        except OSError as exc:
            if exc.errno not in EXHAUSTED:
                raise
            self.server.pause(self, exc)
            raise BlockingIOError(errno.EAGAIN, "accepting paused") from None


class BoundedServer(HTTPServer):
    """Tornado's HTTPServer with the bounds described in this module's docstring."""

    def initialize(  # type: ignore[override]
        self,
        request_callback: httputil.HTTPServerConnectionDelegate,
        limits: ServerConfig,
        ipv6_prefix: int = 64,
    ) -> None:
        """*ipv6_prefix*: ``[login] ipv6_prefix``, the network an IPv6 client is counted by."""
        super().initialize(
            request_callback,
            idle_connection_timeout=limits.idle_timeout,
            body_timeout=limits.body_timeout,
            max_body_size=MAX_BODY_SIZE,
            max_header_size=HARD_HEADER_SIZE,
        )
        self.limits = limits
        self.ipv6_prefix = ipv6_prefix
        # Behind a trusted proxy the proxy is the only peer, and it bounds its own clients.
        self.per_client_cap = None if limits.trust_proxy else limits.max_connections_per_client
        self.max_connections = connection_cap(limits.max_connections)
        if self.max_connections < limits.max_connections:
            log.warning(
                "max_connections %d lowered to %d: the open-files limit is %d "
                "(raise it, e.g. LimitNOFILE= in the systemd unit)",
                limits.max_connections,
                self.max_connections,
                resource.getrlimit(resource.RLIMIT_NOFILE)[0],
            )
        self.live: dict[IOStream, ConnectionState] = {}
        self.per_client: dict[str, int] = {}
        # Connections waiting for a request's headers, the longest waiting first.
        self.waiting: OrderedDict[ConnectionState, None] = OrderedDict()
        self.sweeper = PeriodicCallback(self.sweep, SWEEP_INTERVAL_MS)

    def add_sockets(self, sockets: Iterable[socket.socket]) -> None:
        listeners = []
        for sock in sockets:
            listener = _Listener(sock.family, sock.type, sock.proto, fileno=sock.detach())
            listener.setblocking(False)
            listener.server = self
            listeners.append(listener)
        super().add_sockets(listeners)
        self.sweeper.start()

    def stop(self) -> None:
        self.sweeper.stop()
        super().stop()

    def pause(self, listener: _Listener, exc: OSError) -> None:
        """Stop watching *listener* for a moment: it stays readable, so it would spin."""
        log.error("cannot accept connections: %s; pausing", os.strerror(exc.errno or 0))
        io_loop, fd = IOLoop.current(), listener.fileno()
        io_loop.update_handler(fd, 0)

        def resume() -> None:
            if listener.fileno() == fd:  # not closed by stop() meanwhile
                io_loop.update_handler(fd, IOLoop.READ)

        io_loop.call_later(PAUSE, resume)

    @property
    def in_flight(self) -> int:
        """Requests whose headers arrived and whose answer has not been handed over yet."""
        return len(self.live) - len(self.waiting)

    def handle_stream(self, stream: IOStream, address: tuple[Any, ...]) -> None:
        client = client_key(str(address[0]) if address else "", self.ipv6_prefix)
        per_client = self.per_client_cap
        if per_client is not None and self.per_client.get(client, 0) >= per_client:
            log.warning(
                "refusing connections from %s: %d open, the most one client may hold",
                client,
                per_client,
            )
            _refuse(stream, "Too many connections from this address")
        elif len(self.live) >= self.max_connections and not self._make_room():
            log.warning("refusing connections: %d open, the most allowed", len(self.live))
            _refuse(stream, "Server busy")
        else:
            self.per_client[client] = self.per_client.get(client, 0) + 1
            record = self.live[stream] = ConnectionState(stream, client)
            self.waiting[record] = None
            replace_bare_400(stream, lambda: raw_error(400, "Malformed request"))
            super().handle_stream(stream, address)

    def _make_room(self) -> bool:
        """Close the connection that has waited longest for a request, if for long enough:
        idle or slow, it serves nobody while a new client waits. Busy ones are never chosen
        (clients retry a request on a kept-alive connection that closes)."""
        oldest = next(iter(self.waiting), None)
        if oldest is None or time.monotonic() - oldest.waiting_since < EVICT_AFTER:
            return False
        log.warning("at the connection limit (%d): closing idle ones", self.max_connections)
        self._close(oldest)
        return True

    def _close(self, record: ConnectionState) -> None:
        """Close *record*'s connection and stop counting it."""
        if self.live.pop(record.stream, None) is not None:
            left = self.per_client.pop(record.client) - 1
            if left:
                self.per_client[record.client] = left
        self.waiting.pop(record, None)
        record.stream.close()

    def start_request(
        self, server_conn: object, request_conn: httputil.HTTPConnection
    ) -> httputil.HTTPMessageDelegate:
        stream = stream_of(server_conn)
        record = self.live.get(stream)
        if record is None or stream.closed():
            # Closed after its last answer (Connection: close, a timeout, to make room), yet
            # Tornado would still run what it had buffered: the client, told the connection
            # was gone, would send it again, and it would run twice.
            return httputil.HTTPMessageDelegate()
        if record.served:  # an answer went out: from now on the wait is idle time
            record.waiting_since = time.monotonic()
            self.waiting[record] = None
        record.responding_since = None  # the previous answer, if any, has been sent
        reply = Reply(request_conn, record)
        inner = super().start_request(server_conn, reply)
        return Request(inner, reply, MAX_BODY_SIZE, partial(self._busy, record))

    def _busy(self, record: ConnectionState) -> None:
        """A request's headers arrived: never closed to make room until it is answered."""
        record.served += 1
        self.waiting.pop(record, None)

    def on_close(self, server_conn: object) -> None:
        super().on_close(server_conn)
        record = self.live.get(stream_of(server_conn))
        if record is not None:
            self._close(record)

    def sweep(self) -> None:
        """Close connections whose first request is late (silently, as Tornado's own header
        timeout does), or whose answer has waited for its client past ``body_timeout``."""
        now, limits = time.monotonic(), self.limits
        for record in list(self.live.values()):
            answering = record.responding_since
            if not record.served and now - record.waiting_since > limits.header_timeout:
                self._close(record)
            elif answering is not None and now - answering > limits.body_timeout:
                log.info("closed a connection whose client did not take its answer")
                self._close(record)

    async def drained(self, grace: float) -> bool:
        """Wait until no request is in flight (True) or *grace* seconds pass (False)."""
        deadline = time.monotonic() + grace
        while self.in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return self.in_flight == 0


def _refuse(stream: IOStream, message: str) -> None:
    """Answer 503 and close, without parsing anything, at once."""
    sock = stream.socket
    # Read what already came: closing with unread data resets the connection, and a reset
    # can reach the client before it has read our answer.
    with contextlib.suppress(OSError):
        sock.recv(65536, socket.MSG_DONTWAIT)
    with contextlib.suppress(OSError):
        sock.send(raw_error(503, message), socket.MSG_DONTWAIT)  # a new socket's buffer takes it
    stream.close()

"""Bounds on client connections: how many there are, and how long each may take.

Tornado's HTTPServer, as it comes, lets a client take an hour over its headers (one timer
covers the idle wait and the headers together), never gives up on a response the client
does not read, accepts connections until the process has no descriptor left, and when
accept() then fails it logs a traceback and is called again at once: a loop that spins and
floods the log. :class:`BoundedServer` closes each of these:

- ``header_timeout``: a new connection must have sent its first request's headers within it;
- ``idle_timeout``: a kept-alive connection must have sent its next request's headers within
  it of the previous response (a proxy in front must drop idle upstream connections sooner);
- ``body_timeout``: a request body must have arrived, and a response been taken in, within it;
- ``max_connections``, lowered to what the open-files limit leaves after a reserve (the store,
  static files, logs): past it, the connection that has waited longest (over a second) for a
  request's headers makes room (like nginx reusing idle keep-alive connections), and if none
  has, the new connection gets a minimal 503 with ``Connection: close`` and is closed;
- ``max_connections_per_client``: no one peer address may hold more (unless a trusted proxy
  is the only peer, which bounds its own clients): busy connections are never closed to make
  room, so without it one client sending bodies slowly could hold every slot for a
  ``body_timeout`` at a time, and everyone else would get the 503;
- accept() failing for want of descriptors pauses accepting until a connection closes or a
  short back-off passes, and is logged once a minute with a count, not once per attempt;
- a request Tornado cannot parse gets its 400 as the JSON error every answer has, not a bare
  status line.

Each request goes through :mod:`campus.http.exchange`: oversized headers, early answers and the
``Server`` header are handled there.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import logging
import os
import resource
import socket
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, cast

from tornado import httputil
from tornado.http1connection import HTTP1ServerConnection
from tornado.httpserver import HTTPServer
from tornado.ioloop import IOLoop, PeriodicCallback
from tornado.iostream import IOStream

from campus.http.exchange import ConnectionState, Exchange, Waiting, Watch, json_error

log = logging.getLogger("campus.connections")

#: Past this much without the end of the headers, Tornado closes the connection unanswered.
HARD_HEADER_SIZE = 64 * 1024
#: Descriptors kept back from client connections for Redis, static files, logs, ...
FD_RESERVE = 32
#: accept() errors that mean "no descriptor or memory right now": wait instead of retrying.
EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
BACKOFF_FIRST, BACKOFF_MAX = 0.01, 0.1  # seconds between accept() attempts while exhausted
#: At the connection limit, one that has waited this long for a request's headers (seconds)
#: is closed to make room for a new one.
EVICT_AFTER = 1.0
SWEEP_INTERVAL_MS = 1000  # how often responses are checked against body_timeout
REPORT_EVERY = 60.0  # seconds between two log lines about the same trouble


def canned(status: int, reason: str, message: str) -> bytes:
    """A whole JSON error answer, sent as is, without the application."""
    body, headers = json_error(status, message)
    lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return f"HTTP/1.1 {status} {reason}\r\n{lines}\r\n".encode() + body


def canned_busy() -> bytes:
    """Sent as is, without parsing the request, to a connection past the limit."""
    return canned(503, "Service Unavailable", "Server busy")


def crowded() -> bytes:
    """Sent as is to a client past its own share of connections."""
    return canned(503, "Service Unavailable", "Too many connections from this address")


#: What Tornado writes, and closes, on a request it cannot parse (HTTP1Connection).
_BARE_400 = b"HTTP/1.1 400 Bad Request\r\n\r\n"


def _json_400(stream: IOStream) -> None:
    """Make *stream* answer a request Tornado cannot parse with our JSON 400.

    Tornado writes its bare status line straight to the stream; this swaps that one write
    (compared only when the length matches) for the JSON error, with a request id.
    """
    write = stream.write

    def write_json_400(data: bytes | memoryview, *args: Any, **kwargs: Any) -> Any:
        if len(data) == len(_BARE_400) and bytes(data) == _BARE_400:
            data = canned(400, "Bad Request", "Malformed request")
        return write(data, *args, **kwargs)

    setattr(stream, "write", write_json_400)  # noqa: B010 (a method of this instance only)


@dataclass(frozen=True, slots=True)
class Limits:
    """[server]'s connection bounds (seconds and counts), plus Tornado's body size limit."""

    max_connections: int = 4096
    max_connections_per_client: int | None = 256  # None: no limit per peer (a trusted proxy)
    idle_timeout: float = 75.0
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_body_size: int = 1024 * 1024


def connection_cap(wanted: int) -> int:
    """*wanted*, or fewer if the open-files limit would run out first.

    A tenth of the limit (at least :data:`FD_RESERVE`) stays free for everything else, so
    that connections past the cap can still be accepted and refused with an answer.
    """
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(1, min(wanted, soft - max(FD_RESERVE, soft // 10)))


class _Report:
    """A trouble logged when it starts, then at most once per :data:`REPORT_EVERY` with a
    count: a flood of the same event is a few lines, never a line each."""

    def __init__(self, level: int, message: str) -> None:
        self.level, self.message = level, message
        self.count = 0
        self.args: tuple[object, ...] = ()
        self.reported_at: float | None = None

    def note(self, *args: object) -> None:
        self.count += 1
        self.args = args
        if self.reported_at is None:
            log.log(self.level, self.message, *args)
            self.count = 0
            self.reported_at = time.monotonic()
        else:
            self.flush()

    def flush(self) -> None:
        """The count since the last line, if there is one and it is time."""
        now = time.monotonic()
        if self.count and self.reported_at is not None and now - self.reported_at >= REPORT_EVERY:
            elapsed = now - self.reported_at
            log.log(
                self.level, self.message + " (%d times in %.0f s)", *self.args, self.count, elapsed
            )
            self.count = 0
            self.reported_at = now


class _Listener(socket.socket):
    """A listening socket whose accept(), out of descriptors, says "nothing to accept".

    Tornado's accept handler returns quietly on BlockingIOError; any other error escapes to
    the event loop, which logs it and calls the handler again at once, forever.
    """

    on_exhausted: Callable[[_Listener, OSError], None]

    def accept(self) -> tuple[socket.socket, Any]:
        try:
            return super().accept()
        except OSError as exc:
            if exc.errno not in EXHAUSTED:
                raise
            self.on_exhausted(self, exc)
            raise BlockingIOError(errno.EAGAIN, "accepting paused") from None


class BoundedServer(HTTPServer):
    """Tornado's HTTPServer with the bounds described in this module's docstring."""

    def initialize(  # type: ignore[override]
        self,
        request_callback: httputil.HTTPServerConnectionDelegate,
        limits: Limits = Limits(),
    ) -> None:
        super().initialize(
            request_callback,
            idle_connection_timeout=limits.header_timeout,  # the first request's; see start_request
            body_timeout=limits.body_timeout,
            max_body_size=limits.max_body_size,
            max_header_size=HARD_HEADER_SIZE,
        )
        self.limits = limits
        self.max_connections = connection_cap(limits.max_connections)
        if self.max_connections < limits.max_connections:
            log.warning(
                "max_connections %d lowered to %d: the open-files limit is %d "
                "(raise it, e.g. LimitNOFILE= in the systemd unit)",
                limits.max_connections,
                self.max_connections,
                resource.getrlimit(resource.RLIMIT_NOFILE)[0],
            )
        self.open_connections = 0
        self._per_client: dict[str, int] = {}
        self._live: dict[IOStream, ConnectionState] = {}
        # Connections waiting for a request's headers, the longest waiting first.
        self._waiting: Waiting = OrderedDict()
        self._paused: list[_Listener] = []
        self._backoff = BACKOFF_FIRST
        self._resume_handle: object | None = None
        self._sweeper: PeriodicCallback | None = None
        self._refused = _Report(logging.WARNING, "refusing connections: %d open, the most allowed")
        self._crowding = _Report(
            logging.WARNING, "refusing connections from %s: %d open, the most allowed per client"
        )
        self._evicted = _Report(
            logging.WARNING,
            "at the connection limit (%d): closing those that waited longest for a request",
        )
        self._exhausted = _Report(
            logging.ERROR, "cannot accept connections: %s; pausing until one closes"
        )
        self._cut = _Report(
            logging.INFO, "closed a connection whose client did not take its response in %g s"
        )

    # -- listening ------------------------------------------------------------------------

    def add_sockets(self, sockets: Iterable[socket.socket]) -> None:
        listeners = []
        for sock in sockets:
            listener = _Listener(sock.family, sock.type, sock.proto, fileno=sock.detach())
            listener.setblocking(False)
            listener.on_exhausted = self._on_exhausted
            listeners.append(listener)
        super().add_sockets(listeners)
        if self._sweeper is None:
            self._sweeper = PeriodicCallback(self._sweep, SWEEP_INTERVAL_MS)
            self._sweeper.start()

    def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.stop()
        if self._resume_handle is not None:
            IOLoop.current().remove_timeout(self._resume_handle)
            self._resume_handle = None
        self._paused.clear()
        super().stop()

    def _on_exhausted(self, listener: _Listener, exc: OSError) -> None:
        """Stop watching *listener* for a while: it stays readable, so it would spin."""
        self._exhausted.note(os.strerror(exc.errno or 0))
        if listener not in self._paused:
            IOLoop.current().update_handler(listener.fileno(), 0)
            self._paused.append(listener)
        if self._resume_handle is None:
            self._resume_handle = IOLoop.current().call_later(self._backoff, self._resume)
            self._backoff = min(2 * self._backoff, BACKOFF_MAX)

    def _resume(self) -> None:
        """Watch the paused listeners again (a connection closed, or the back-off passed)."""
        if self._resume_handle is not None:
            IOLoop.current().remove_timeout(self._resume_handle)
            self._resume_handle = None
        io_loop = IOLoop.current()
        for listener in self._paused:
            if listener.fileno() >= 0:
                io_loop.update_handler(listener.fileno(), IOLoop.READ)
        self._paused.clear()

    # -- connections ----------------------------------------------------------------------

    def handle_stream(self, stream: IOStream, address: tuple[Any, ...]) -> None:
        self._backoff = BACKOFF_FIRST  # accept() works again
        client = str(address[0]) if address else ""
        per_client = self.limits.max_connections_per_client
        if per_client is not None and self._per_client.get(client, 0) >= per_client:
            self._crowding.note(client, per_client)
            self._refuse(stream, busy=False)
            return
        if self.open_connections >= self.max_connections and not self._make_room():
            self._refuse(stream)
            return
        self.open_connections += 1
        self._per_client[client] = self._per_client.get(client, 0) + 1
        record = self._live[stream] = ConnectionState(stream, client)
        self._waiting[record] = None
        _json_400(stream)
        # Each connection gets its own parameters: its header timeout grows to the idle
        # timeout once it has served a request (start_request), which Tornado reads afresh
        # before waiting for each request.
        shared = self.conn_params
        self.conn_params = copy.copy(shared)
        try:
            super().handle_stream(stream, address)
        finally:
            self.conn_params = shared

    def _make_room(self) -> bool:
        """Close the connection that has waited longest for a request, if for long enough.

        An idle kept-alive connection may be closed at any time (clients retry on a new one),
        and one that has not finished its headers within :data:`EVICT_AFTER` is slow or idle:
        either serves nobody while a new client waits. Busy ones are never chosen.
        """
        oldest = next(iter(self._waiting), None)
        if oldest is None or time.monotonic() - oldest.waiting_since < EVICT_AFTER:
            return False
        self._evicted.note(self.max_connections)
        self._forget(oldest)
        oldest.stream.close()
        return True

    def _forget(self, record: ConnectionState) -> None:
        """No longer count *record*: it is closing."""
        if self._live.pop(record.stream, None) is not None:
            self.open_connections -= 1
            left = self._per_client.pop(record.client, 1) - 1
            if left:
                self._per_client[record.client] = left
        self._waiting.pop(record, None)

    def _refuse(self, stream: IOStream, *, busy: bool = True) -> None:
        """Answer 503 and close, without parsing anything, at once.

        *busy*: the server is full; else this client holds too many connections already.
        """
        if busy:
            self._refused.note(self.open_connections)
        sock = stream.socket
        # Read what already came: closing with unread data resets the connection, and a
        # reset can reach the client before it has read our answer.
        with contextlib.suppress(OSError):
            sock.recv(65536, socket.MSG_DONTWAIT)
        with contextlib.suppress(OSError):
            reply = canned_busy() if busy else crowded()
            sock.send(reply, socket.MSG_DONTWAIT)  # a new socket's buffer takes it whole
        stream.close()

    def start_request(
        self, server_conn: object, request_conn: httputil.HTTPConnection
    ) -> httputil.HTTPMessageDelegate:
        conn = cast(HTTP1ServerConnection, server_conn)
        if conn.stream.closed():
            # Closed after its last answer (Connection: close, a timeout, to make room), yet
            # Tornado would still run what it had buffered: the client, told the connection
            # was gone, would send it again, and it would run twice.
            return httputil.HTTPMessageDelegate()
        record = self._live.get(conn.stream)
        if record is None:  # closed to make room; Tornado has yet to notice
            record = ConnectionState(conn.stream)
        elif record.requests:
            # A request has been answered: from now on the wait is idle time.
            if record.requests == 1:
                conn.params.header_timeout = self.limits.idle_timeout
            record.waiting_since = time.monotonic()
            self._waiting[record] = None
        record.requests += 1
        record.responding_since = None  # the previous response, if any, has been sent
        exchange = Exchange(request_conn, record, self._waiting)
        inner = super().start_request(server_conn, exchange)
        return Watch(inner, exchange, self.limits.max_body_size)

    def on_close(self, server_conn: object) -> None:
        super().on_close(server_conn)
        record = self._live.get(cast(HTTP1ServerConnection, server_conn).stream)
        if record is not None:
            self._forget(record)
        if self._paused:
            self._resume()  # a descriptor was just freed

    def _sweep(self) -> None:
        """Close connections whose response has waited for its client past body_timeout."""
        for report in (self._refused, self._evicted, self._exhausted, self._cut):
            report.flush()
        deadline = time.monotonic() - self.limits.body_timeout
        for record in list(self._live.values()):
            since = record.responding_since
            if since is not None and since < deadline:
                record.responding_since = None
                self._cut.note(self.limits.body_timeout)
                record.stream.close()

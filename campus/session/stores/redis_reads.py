"""Session reads on a connection of their own, pipelined: the Redis store's hot path.

Every request reads its session (one ``GETEX``), so this path sets what a request costs.
Through redis-py's client each read checked a connection out of the pool (a lock, and
observability hooks), wrote under ``wait_for`` (a task per command on Python 3.11), read
under a timer, checked the connection back in, and parsed the command in Python: more
instructions than the rest of the request's session work together (bench/README.md has
the figures, lever by lever). Here:

- One connection, dedicated to reads and made as the pool makes its own (same URL, TLS,
  credentials and database; under Sentinel, the current master): no checkout per read.
- The reads of one event-loop turn are written together, with one ``send()``, and nothing
  waits for a reply before writing more: Redis answers in order, and one reader task hands
  each reply to its read. Each read is still exactly one command.
- One deadline per read, kept by one timer for the connection rather than one per read.
  When the oldest read passes it, the connection is dropped and every read on it fails:
  a Redis that accepts but never answers costs one timeout.
- When the connection breaks (a Redis restart, a Sentinel failover), the reads it held are
  sent once more on a new one, as redis-py's single retry would: a restart costs nobody an
  error. When no connection can be made, the reads waiting for one fail at once.

Failures leave as redis-py's exceptions or ``TimeoutError``; the store maps them to
``StoreUnavailable``. Without hiredis (a dependency, but an application may lack it) commands
are packed by redis-py, as its replies are parsed: the same bytes, more instructions.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError, RedisError, ResponseError

Command = tuple[str | bytes | int, ...]

_hiredis_pack: Callable[[Command], bytes] | None
try:
    # hiredis's stub declares a 1-tuple; it takes any number of arguments.
    from hiredis import pack_command as _hiredis_pack  # type: ignore[assignment]
except ModuleNotFoundError:
    _hiredis_pack = None


class _Read:
    __slots__ = ("command", "deadline", "future", "retried")

    def __init__(self, command: Command, future: asyncio.Future[Any], deadline: float) -> None:
        self.command = command
        self.future = future
        self.deadline = deadline
        self.retried = False


class ReadPipeline:
    """Pipelined reads on one dedicated connection, each failing after *timeout* seconds."""

    def __init__(self, client: Redis, timeout: float | None) -> None:
        pool = client.connection_pool
        # No socket timeout on this connection: the deadline below is the only timer.
        kwargs = {**pool.connection_kwargs, "socket_timeout": None}
        self._connection: AbstractConnection = pool.connection_class(**kwargs)
        self._timeout = timeout
        self._queued: list[_Read] = []  # not written yet, oldest first
        self._sent: deque[_Read] = deque()  # written, waiting for their replies, in order
        self._task: asyncio.Task[None] | None = None  # connects, writes, reads the replies
        self._ready = False  # connected, and the reader is reading
        self._flushing = False  # a read of this turn will write the turn's reads
        self._idle: asyncio.Future[None] | None = None  # the reader waits for reads to send
        self._watchdog: asyncio.TimerHandle | None = None
        self._timed_out = False
        self._closed = False

    async def execute(self, *command: str | bytes | int) -> Any:
        """Send *command* (a read: it may be sent twice) and return its reply."""
        if self._closed:
            raise ConnectionError("the store is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        deadline = loop.time() + self._timeout if self._timeout is not None else float("inf")
        self._queued.append(_Read(command, future, deadline))
        if self._watchdog is None and self._timeout is not None:
            self._watchdog = loop.call_at(deadline, self._check_deadline)
        if self._task is None:
            self._task = loop.create_task(self._run())  # writes the queue once connected
        elif self._ready and not self._flushing:
            # The turn's first read lets the others of the turn join it, then writes them all.
            self._flushing = True
            try:
                await asyncio.sleep(0)
            finally:
                self._flushing = False
                await self._flush()
        return await future

    async def _flush(self) -> None:
        connection = self._connection
        if not (self._queued and self._ready and connection.is_connected):
            return  # the reader writes what is queued once it has a connection again
        batch, self._queued = self._queued, []
        self._sent.extend(batch)
        if self._idle is not None:
            if not self._idle.done():
                self._idle.set_result(None)
            self._idle = None
        packed = b"".join([_pack(connection, read.command) for read in batch])
        # A write that fails closes the connection: the reader sees it and settles the reads.
        with contextlib.suppress(RedisError, OSError):
            await connection.send_packed_command(packed, check_health=False)

    async def _run(self) -> None:
        """Connect, write what is queued, then hand out replies until the connection ends."""
        connection = self._connection
        failure: BaseException
        connected = False
        try:
            await connection.connect()  # type: ignore[no-untyped-call]
            connected = self._ready = True
            await self._flush()
            while True:
                if not self._sent:
                    # Idle: wait for a write, not on the socket. A read left pending in
                    # redis-py when the loop closes would await in its cleanup (an error).
                    self._idle = asyncio.get_running_loop().create_future()
                    await self._idle
                try:
                    reply = await connection.read_response()
                except ResponseError as exc:  # an error reply: that read's, not the connection's
                    reply = exc
                if not self._sent:
                    raise ConnectionError("Redis sent a reply nobody asked for")
                read = self._sent.popleft()
                if not read.future.done():  # done: its caller was cancelled
                    if isinstance(reply, Exception):  # an error reply, raised or handed back
                        read.future.set_exception(reply)
                    else:
                        read.future.set_result(reply)
        except asyncio.CancelledError:  # the deadline passed, or close()
            failure = TimeoutError(f"no answer within {self._timeout}s")
        except (RedisError, OSError) as exc:
            failure = exc
        except Exception as exc:  # a bug here must fail the reads, never strand them
            failure = ConnectionError(f"the read connection failed: {exc!r}")
        # Not in a `finally`: when the loop closes under a store nobody closed, the coroutine
        # gets GeneratorExit and must not await.
        self._ready = False
        with contextlib.suppress(RedisError, OSError, asyncio.CancelledError):
            await connection.disconnect(nowait=True)
        self._task = None  # only now: a new connection must not race this disconnect
        if self._closed:
            failure = ConnectionError("the store is closed")
        self._settle(failure, retry=connected and not self._timed_out and not self._closed)

    def _settle(self, failure: BaseException, *, retry: bool) -> None:
        """After a connection ended: send its reads once more on a new one, or fail them.

        No second try after the deadline (Redis is not answering), after close(), or when
        the connection could not be made at all (redis-py's connect has retried already).
        """
        self._timed_out = False
        again: list[_Read] = []
        for read in self._sent:
            if retry and not read.retried:
                read.retried = True
                again.append(read)
            else:
                _fail(read, failure)
        self._sent.clear()
        if not retry:
            queued, self._queued = self._queued, []
            for read in queued:
                _fail(read, failure)
            return
        self._queued[:0] = again
        if self._queued:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def _check_deadline(self) -> None:
        self._watchdog = None
        oldest = self._sent[0] if self._sent else self._queued[0] if self._queued else None
        if oldest is None:
            return
        loop = asyncio.get_running_loop()
        if oldest.deadline > loop.time():
            self._watchdog = loop.call_at(oldest.deadline, self._check_deadline)
        elif self._task is not None:
            self._timed_out = True
            self._task.cancel()  # its _settle() fails every read it holds
        else:
            self._settle(TimeoutError(f"no answer within {self._timeout}s"), retry=False)

    async def close(self) -> None:
        """Fail what is waiting and close the connection; later reads fail at once."""
        self._closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        task = self._task
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._settle(ConnectionError("the store is closed"), retry=False)


def _pack(connection: AbstractConnection, command: Command) -> bytes:
    """RESP for one command, in C (redis-py's asyncio client packs in Python: 15x slower)."""
    if _hiredis_pack is None:
        return b"".join(connection.pack_command(*command))
    return _hiredis_pack(command)


def _fail(read: _Read, failure: BaseException) -> None:
    if not read.future.done():
        read.future.set_exception(failure)

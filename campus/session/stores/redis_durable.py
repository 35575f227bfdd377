"""Ending a session for good: deletes that wait for Redis's append-only file to hold them.

A Redis that crashes and restarts comes back with what its files hold. With snapshots only,
every session ended since the last snapshot is alive again; with the append-only file (AOF)
and ``appendfsync everysec``, a power loss can still undo the last second. On Redis 7.2 and
later, ``WAITAOF 1 0 ms`` returns once the connection's writes are on the disk: the store
sends it right behind a delete, on the same connection, so an ended session stays ended
whatever happens to the machine next. The price is one more round trip and the wait for the
next fsync: up to a second with ``appendfsync everysec``, none with ``always``.

What the server offers is read from ``INFO`` (which an ACL can allow where it forbids
CONFIG), at the first delete and again a minute later (a failover may put a master
configured otherwise in charge). A Redis Cluster is not waited for: its client spreads one
delete over several connections and WAITAOF would have to follow each.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis, RedisCluster
from redis.exceptions import NoPermissionError, ResponseError

log = logging.getLogger("campus.session")

#: How long a delete waits for the disk at most: one fsync period of ``everysec``, with room.
WAIT_MS = 1500
#: How long what INFO said is trusted.
RECHECK_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Persistence:
    """What a Redis (every primary of a Cluster) keeps across a crash, as INFO tells it."""

    version: tuple[int, ...]
    aof: bool  # the append-only file is on

    @property
    def waitaof(self) -> bool:
        """Whether a write can be waited for until it is on the disk (Redis 7.2+, AOF on)."""
        return self.aof and self.version >= (7, 2)


def _version(text: object) -> tuple[int, ...]:
    parts = str(text).split(".")
    return tuple(int(p) for p in parts if p.isdigit())


def _parse(info: dict[str, Any]) -> Persistence:
    return Persistence(
        _version(info.get("redis_version", "0")), str(info.get("aof_enabled")) == "1"
    )


async def read_persistence(client: Redis | RedisCluster) -> Persistence | None:
    """INFO's view of the server; None when INFO is refused (an ACL without ``+info``).

    Other errors (the server is down) propagate: the caller knows what an outage means.
    """
    try:
        if isinstance(client, RedisCluster):
            replies = await client.info(target_nodes=RedisCluster.PRIMARIES)
            primaries = [_parse(r) for r in replies.values()] if replies else []
            if not primaries:
                return None
            return Persistence(min(p.version for p in primaries), all(p.aof for p in primaries))
        return _parse(await client.info())
    except NoPermissionError:
        return None


def persistence_warning(persistence: Persistence | None) -> str | None:
    """The one line to log at startup when a crash of Redis can bring ended sessions back."""
    if persistence is None:
        return (
            "cannot tell whether Redis keeps ended sessions ended across a crash (INFO is"
            " refused: grant the campus user +info); on snapshots only it does not"
        )
    if not persistence.aof:
        return (
            "Redis runs without its append-only file (snapshots only): a crash and restart"
            " of Redis brings back every session ended since its last snapshot (logouts,"
            ' revocations); set "appendonly yes"'
        )
    return None


class DurableDeletes:
    """Runs a delete, then (where the server allows) waits until it is on the disk."""

    def __init__(
        self, client: Redis | RedisCluster, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._client = client
        self._clock = clock
        self._known: Persistence | None = None
        self._checked_at: float | None = None
        self._lock = asyncio.Lock()
        # Each WAITAOF must answer within the connection's socket timeout (a read that
        # times out is retried, delete and all): several short waits make up one long one.
        socket_timeout = client.get_connection_kwargs().get("socket_timeout")
        limit_ms = int(socket_timeout * 1000) if isinstance(socket_timeout, int | float) else 0
        self._wait_ms = max(50, int(limit_ms * 0.8)) if limit_ms else WAIT_MS
        self._waits = math.ceil(WAIT_MS / self._wait_ms)

    @property
    def wait_budget(self) -> float:
        """How much longer than a plain command a delete may take: the wait for the disk."""
        return self._waits * self._wait_ms / 1000 if self._waits_for_disk() else 0.0

    async def refresh(self) -> None:
        """Ask INFO what the server offers, when a minute has passed since it was asked."""
        if isinstance(self._client, RedisCluster):
            return
        async with self._lock:
            now = self._clock()
            if self._checked_at is None or now - self._checked_at > RECHECK_SECONDS:
                self._known = await read_persistence(self._client)
                self._checked_at = now

    async def getdel(self, key: str) -> Any:
        """GETDEL *key*: the record it held, if any."""
        return await self._execute(lambda client: client.getdel(key))

    async def delete(self, *keys: str) -> int:
        """DEL *keys* (on a Cluster, split by hash slot by the client): how many there were."""
        deleted: int = await self._execute(lambda client: client.delete(*keys))
        return deleted

    def _waits_for_disk(self) -> bool:
        cluster = isinstance(self._client, RedisCluster)
        return not cluster and self._known is not None and self._known.waitaof

    async def _execute(self, command: Callable[[Any], Awaitable[Any]]) -> Any:
        """*command*'s reply, once the server has it on its disk where it can say so."""
        if not self._waits_for_disk():
            return await command(self._client)
        assert isinstance(self._client, Redis)  # a Cluster never waits (see the docstring)
        # One connection for the delete and its waits: WAITAOF waits for its own writes.
        async with self._client.client() as single:
            reply = await command(single)
            for _ in range(self._waits):
                try:
                    synced = await single.waitaof(1, 0, self._wait_ms)  # [local, replicas]
                except ResponseError:  # the AOF was turned off since INFO said it was on
                    break
                if int(synced[0]):
                    return reply
        # Done, but not known to be on the disk: the AOF turned off, or a disk that stalls.
        self._checked_at = None  # ask INFO again at the next delete
        log.warning(
            "Redis did not confirm within %d ms that a session's end is on its disk",
            self._waits * self._wait_ms,
        )
        return reply

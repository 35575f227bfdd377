"""The Redis store: shared by every process and machine, the production default.

- Keys are ``prefix + SHA-256(session id)``: a copy of Redis (a dump, a replica, a MONITOR
  log) holds no id that a cookie could carry.
- A read is one command: ``GETEX`` returns the record and pushes its idle expiry together.
  Reads travel on a pipelined connection of their own (redis_reads.py): the hot path.
- A write is one command: a Lua script that merges only the changed top-level keys into the
  record *if it still exists*, so concurrent requests keep each other's writes and a request
  in flight cannot resurrect a session that logout, regenerate or revoke destroyed.
- Each user has an index (``prefix + "sessions:" + SHA-256(user)``): a sorted set of their
  session keys' suffixes scored by absolute deadline, for "log out everywhere" and "Your
  sessions". It drops members whose sessions are gone (at logout, login, listing and when
  sessions are ended) and expires with its longest-lived member, never later.
- On a Redis Cluster, keys of one script must share a hash slot, and the session key, the
  key it replaces, the user index and a login's two attempt counters do not: there each
  write is split into single-slot steps (merge-if-exists stays one script on the session
  key), and a listing costs one command per session. Elsewhere a write stays one script
  call, a reservation one script for both counters, a listing one pipeline.
- Login-attempt counters are sorted sets of attempt times under ``prefix + "login:" +
  SHA-256(key)``: reserved before the password check and given back on success, at most
  ``limit`` entries each, expiring ``window`` seconds after the last attempt.
- Every operation has a deadline; driver errors never leave this module: they become
  :class:`StoreUnavailable`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import json
import time
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any, TypeVar

from redis.asyncio import Redis, RedisCluster
from redis.exceptions import RedisClusterException, RedisError

from campus.session.store import (
    MAX_LISTED,
    Clock,
    LiveSession,
    SessionRecord,
    StoreUnavailable,
    decode_record,
    encode_record,
)
from campus.session.stores.redis_reads import ReadPipeline
from campus.session.stores.redis_scripts import (
    CREATE,
    GIVE_BACK,
    INDEX,
    PEEK,
    RESERVE,
    UPDATE,
)
from campus.session.stores.redis_url import close, connect

__all__ = ["RedisStore", "connect"]

T = TypeVar("T")

#: At most this many members leave an index per script call.
_INDEX_SLICE = 1000


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


class RedisStore:
    """Session records in Redis via ``redis.asyncio`` (hiredis parses replies when installed).

    Build it with :meth:`from_url`; ``RedisStore(client, ...)`` takes a client of your own
    (it must come from :func:`connect` or be built the same way to get its timeouts).
    """

    name = "redis"

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = "campus:",
        timeout: float = 1.0,
        clock: Clock = time.time,
        max_concurrent: int = 64,
    ) -> RedisStore:
        """The store as production runs it, for ``redis://``, ``rediss://``, ``unix://``,
        ``redis+sentinel://`` and ``redis+cluster://`` URLs (see redis_url.py).

        A blocking pool, connect and socket timeouts of ``timeout`` seconds, one retry, and a
        deadline of ``timeout`` seconds per operation. No I/O until the first command;
        ``await store.close()`` at shutdown. A malformed URL raises ValueError (the message
        never repeats the URL: it may hold a password).
        """
        client = connect(url, timeout=timeout)
        return cls(client, prefix=prefix, clock=clock, max_concurrent=max_concurrent)

    def __init__(
        self,
        client: Redis | RedisCluster,
        *,
        prefix: str = "campus:",
        clock: Clock = time.time,
        timeout: float | None = None,
        max_concurrent: int = 64,
    ) -> None:
        self._redis = client
        self._prefix = prefix
        self._clock = clock
        # One deadline per operation, the client's socket timeout by default. Without it a
        # Redis that accepts connections but never answers costs several socket timeouts
        # (the connection handshake's replies, then the retry's), not one.
        self._timeout = timeout if timeout is not None else _socket_timeout(client)
        self._cluster = isinstance(client, RedisCluster)
        # At most this many commands (or pipelines) on the pool at once; the others wait for
        # a slot within their deadline. redis-py's pools refuse a connection past their size
        # (100, per node for a Cluster) at once, which under a burst failed logouts.
        self._slots = asyncio.Semaphore(max_concurrent)
        self._create = client.register_script(CREATE)
        self._update = client.register_script(UPDATE)
        self._index = client.register_script(INDEX)
        self._peek = client.register_script(PEEK)
        self._reserve = client.register_script(RESERVE)
        self._give_back = client.register_script(GIVE_BACK)
        # Cluster clients route each key to its node: reads go through the client there.
        self._reads = (
            None if isinstance(client, RedisCluster) else ReadPipeline(client, self._timeout)
        )

    @property
    def client(self) -> Redis | RedisCluster:
        """The connection pool, for other users of the same Redis (closed with the store)."""
        return self._redis

    def key(self, sid: str) -> str:
        """The Redis key of a session id (public so tests and tools can find a record)."""
        return self._prefix + _digest(sid)

    def user_key(self, user: str) -> str:
        """The key of a user's index: a sorted set of their session keys' suffixes."""
        return self._prefix + "sessions:" + _digest(user)

    def _legacy_user_key(self, user: str) -> str:
        # Before the index was a sorted set it was a plain set under this name. Revocation
        # still reads it; it expires by itself within one absolute timeout of the upgrade.
        return self._prefix + "user:" + _digest(user)

    async def load(self, sid: str, *, touch: int | None) -> SessionRecord | None:
        key = self.key(sid)
        command = ("GET", key) if touch is None else ("GETEX", key, "PX", touch * 1000)
        if self._reads is None:
            raw = await self._call(self._redis.execute_command(*command))
        else:  # the hot path: no pool checkout, no timer per read (see redis_reads.py)
            try:
                raw = await self._reads.execute(*command)
            except (TimeoutError, RedisError, OSError) as exc:
                raise _unavailable(exc, self._timeout) from None
        if raw is None:
            return None
        record = decode_record(raw)
        if record is None or record.expires <= self._clock():
            return None
        return record

    async def create(
        self, sid: str, record: SessionRecord, *, ttl: int, replaces: str | None = None
    ) -> None:
        if self._cluster:
            await self._call(self._create_in_slots(sid, record, ttl=ttl, replaces=replaces))
            return
        keys = [self.key(sid)]
        if replaces is not None:
            keys.append(self.key(replaces))
        if record.user is not None:
            keys.append(self.user_key(record.user))
        args: list[str | int] = [
            encode_record(record),
            ttl * 1000,
            "1" if replaces is not None else "0",
            _digest(sid),
            record.expires * 1000,
            self._now_ms(),
            _digest(replaces) if replaces is not None else "",
        ]
        await self._call(self._create(keys=keys, args=args))

    async def update(
        self,
        sid: str,
        changed: Mapping[str, str],
        deleted: list[str],
        *,
        ttl: int,
        user: str | None,
    ) -> bool:
        now = self._clock()
        keys = [self.key(sid)]
        if user is not None and not self._cluster:
            keys.append(self.user_key(user))
        args: list[str | int] = [
            json.dumps(dict(changed), separators=(",", ":")),
            json.dumps(deleted),
            ttl * 1000,
            int(now),
            user or "",
            _digest(sid),
            int(now * 1000),
        ]
        if not self._cluster:
            return bool(await self._call(self._update(keys=keys, args=args)))
        return await self._call(self._update_in_slots(keys, args, sid=sid, user=user))

    async def _create_in_slots(
        self, sid: str, record: SessionRecord, *, ttl: int, replaces: str | None
    ) -> None:
        """Cluster: the old id goes first, so a failure half-way never leaves it valid."""
        if replaces is not None:
            await self._redis.delete(self.key(replaces))
        await self._redis.set(self.key(sid), encode_record(record), px=ttl * 1000)
        if record.user is not None:
            gone = [_digest(replaces)] if replaces is not None else []
            await self._add_to_index(record.user, _digest(sid), record.expires, gone)

    async def _update_in_slots(
        self, keys: list[str], args: list[str | int], *, sid: str, user: str | None
    ) -> bool:
        """Cluster: merge into the session key alone, then index it if it still exists."""
        expires = await self._update(keys=keys, args=args)
        if not expires:
            return False
        if user is not None:
            await self._add_to_index(user, _digest(sid), int(expires), [])
        return True

    async def _add_to_index(self, user: str, member: str, expires: int, gone: list[str]) -> None:
        args: list[str | int] = [member, expires * 1000, self._now_ms(), *gone]
        await self._index(keys=[self.user_key(user)], args=args)

    async def _drop_from_index(self, user: str, gone: list[str]) -> None:
        # In slices: Lua's unpack() refuses a few thousand values at once.
        for start in range(0, len(gone), _INDEX_SLICE):
            args: list[str | int] = ["", 0, self._now_ms(), *gone[start : start + _INDEX_SLICE]]
            await self._call(self._index(keys=[self.user_key(user)], args=args))

    async def delete(self, sid: str) -> None:
        # GETDEL, not DEL: the record names its user, whose index then drops it (logout).
        raw = await self._call(self._redis.getdel(self.key(sid)))
        record = decode_record(raw) if raw is not None else None
        if record is not None and record.user is not None:
            await self._drop_from_index(record.user, [_digest(sid)])

    async def delete_user(self, user: str) -> int:
        index, legacy = self.user_key(user), self._legacy_user_key(user)
        members: list[Any] = list(await self._call(self._redis.zrange(index, 0, -1)))
        members += await self._call(self._redis.smembers(legacy))
        keys = sorted({self._prefix + _text(m) for m in members})
        deleted: int = await self._call(self._redis.delete(*keys)) if keys else 0
        await self._call(self._redis.delete(index, legacy))
        return deleted

    async def sessions_of(self, user: str) -> list[LiveSession]:
        now = self._clock()
        index = self.user_key(user)
        # The newest MAX_LISTED still within their absolute deadline; older members are
        # pruned by the index script, which every login and every pruning runs.
        newest = self._redis.zrange(
            index, "+inf", f"({self._now_ms()}", desc=True, byscore=True, offset=0, num=MAX_LISTED
        )
        members: list[str] = [_text(m) for m in await self._call(newest)]
        gone: list[str] = []
        keys = [self._prefix + m for m in members]
        replies: list[Any]
        if self._cluster:  # one command per session, each on its own node
            peeks = await self._call(asyncio.gather(*(self._peek(keys=[k]) for k in keys)))
            raws, ttls = [p[0] for p in peeks], [p[1] for p in peeks]
        else:  # every session in one round trip
            pipe = self._redis.pipeline(transaction=False)
            for key in keys:
                pipe.get(key)
                pipe.pttl(key)
            replies = await self._call(pipe.execute()) if keys else []
            raws, ttls = replies[0::2], replies[1::2]
        live = []
        for member, raw, ttl in zip(members, raws, ttls, strict=True):
            record = decode_record(raw) if raw is not None else None
            if record is None or record.expires <= now or record.user != user or ttl < 0:
                gone.append(member)
                continue
            deadline = min(now + ttl / 1000, float(record.expires))
            live.append(LiveSession(member, record, deadline))
        if gone:
            await self._drop_from_index(user, gone)
        return live

    async def end_sessions(self, user: str, refs: Sequence[str]) -> int:
        index = self.user_key(user)
        indexed: list[Any] = await self._call(self._redis.zrange(index, 0, -1))
        members = {_text(m) for m in indexed}
        mine = sorted(members.intersection(refs))
        if not mine:
            return 0
        ended: int = await self._call(self._redis.delete(*(self._prefix + m for m in mine)))
        await self._drop_from_index(user, mine)
        return ended

    async def count(self) -> int:
        pattern = _glob_escape(self._prefix) + "?" * 64
        total = 0
        async for _ in self._scan(pattern):
            total += 1
        return total

    async def ping(self) -> None:
        if self._reads is None:
            await self._call(self._redis.ping())
            return
        # On the reads' connection: it is the one every request needs (and it opens now).
        try:
            await self._reads.execute("PING")
        except (TimeoutError, RedisError, OSError) as exc:
            raise _unavailable(exc, self._timeout) from None

    async def close(self) -> None:
        if self._reads is not None:
            await self._reads.close()
        with contextlib.suppress(RedisError, RedisClusterException, OSError):
            await close(self._redis)

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    async def _scan(self, pattern: str) -> Any:
        keys = aiter(self._redis.scan_iter(match=pattern, count=1000))
        while True:
            try:
                yield await self._call(anext(keys))  # each batch of the scan has the deadline
            except StopAsyncIteration:
                return

    async def _call(self, awaitable: Awaitable[T]) -> T:
        try:
            async with asyncio.timeout(self._timeout):
                async with self._slots:
                    return await awaitable
        except (TimeoutError, RedisError, RedisClusterException, OSError) as exc:
            # RedisClusterException is not a RedisError: e.g. no node of the Cluster answers.
            raise _unavailable(exc, self._timeout) from None
        finally:
            if inspect.iscoroutine(awaitable):
                awaitable.close()  # never started when the deadline passed waiting for a slot

    def attempt_key(self, key: str) -> str:
        """The Redis key of a login-attempt counter: hashed, so no email sits in Redis."""
        # surrogatepass: a key built from JSON input may hold a lone surrogate.
        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
        return self._prefix + "login:" + digest

    async def reserve(self, keys: Sequence[str], attempt: str, *, window: int, limit: int) -> float:
        counters = [self.attempt_key(key) for key in dict.fromkeys(keys)]
        now = self._clock()
        args: list[str | int] = [repr(now), window, limit, attempt]
        if not self._cluster:  # one script, all keys at once
            return max(float(await self._call(self._reserve(keys=counters, args=args))), 0.0)
        # Cluster: the counters live in different slots, so one script per key; a key that
        # refuses gives back what the ones before it took.
        taken: list[str] = []
        for counter in counters:
            wait = float(await self._call(self._reserve(keys=[counter], args=args)))
            if wait > 0:
                if taken:
                    await self._call(self._give_back(keys=taken, args=[attempt, len(taken)]))
                return wait
            taken.append(counter)
        return 0.0

    async def give_back(
        self, attempt: str, keys: Sequence[str], *, forget: Sequence[str] = ()
    ) -> None:
        returned = [self.attempt_key(key) for key in keys]
        forgotten = [self.attempt_key(key) for key in forget]
        if not self._cluster:
            args: list[str | int] = [attempt, len(returned)]
            await self._call(self._give_back(keys=returned + forgotten, args=args))
            return
        calls = [self._redis.zrem(key, attempt) for key in returned]
        calls += [self._redis.delete(key) for key in forgotten]
        await self._call(asyncio.gather(*calls))


def _unavailable(exc: BaseException, timeout: float | None) -> StoreUnavailable:
    if isinstance(exc, TimeoutError):  # the deadline's, not redis-py's own TimeoutError
        return StoreUnavailable(f"redis: no answer within {timeout}s")
    message = " ".join(str(exc).split())  # Sentinel's lists every client's repr
    return StoreUnavailable(f"redis: {message[:200]}")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _socket_timeout(client: Redis | RedisCluster) -> float | None:
    kwargs: dict[str, Any] = client.get_connection_kwargs()
    timeout = kwargs.get("socket_timeout")
    return float(timeout) if isinstance(timeout, int | float) else None

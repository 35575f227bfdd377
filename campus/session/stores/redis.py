"""The Redis store: shared by every process and machine, the production default.

- Keys are ``prefix + SHA-256(session id)``: a copy of Redis (a dump, a replica, a MONITOR
  log) holds no id that a cookie could carry.
- A read is one command: ``GETEX`` returns the record and pushes its idle expiry together.
- A write is one command: a Lua script that merges only the changed top-level keys into the
  record *if it still exists*, so concurrent requests keep each other's writes and a request
  in flight cannot resurrect a session that logout, regenerate or revoke destroyed.
- Each user has an index set (``prefix + "user:" + SHA-256(user)``) of their session keys,
  for "log out everywhere".
- On a Redis Cluster, keys of one script must share a hash slot, and the session key, the
  key it replaces and the user index do not: there each write is split into single-slot
  steps (merge-if-exists stays one script on the session key; the index and the replaced
  key are separate commands). Elsewhere it stays one script call.
- Login-failure counters are sorted sets of failure times under ``prefix + "login:" +
  SHA-256(key)``: one single-key script per check (Redis Cluster safe), at most ``limit``
  entries each, expiring ``window`` seconds after the last failure.
- Every operation has a deadline; driver errors never leave this module: they become
  :class:`StoreUnavailable`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import secrets
import time
from collections.abc import Awaitable, Mapping
from typing import Any, TypeVar

from redis.asyncio import Redis, RedisCluster
from redis.exceptions import RedisClusterException, RedisError

from campus.session.store import (
    Attempt,
    Clock,
    SessionRecord,
    StoreUnavailable,
    decode_record,
    encode_record,
)
from campus.session.stores.redis_batch import ReadBatcher
from campus.session.stores.redis_url import close, connect

__all__ = ["RedisStore", "connect"]

T = TypeVar("T")

# KEYS: session key, [key it replaces], [user index]. ARGV: record, ttl ms, replaces?, member,
# index ttl ms.
_CREATE = """
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local n = 2
if ARGV[3] == '1' then
  redis.call('DEL', KEYS[n])
  n = n + 1
end
if KEYS[n] then
  redis.call('SADD', KEYS[n], ARGV[4])
  if redis.call('PTTL', KEYS[n]) < tonumber(ARGV[5]) then
    redis.call('PEXPIRE', KEYS[n], ARGV[5])
  end
end
return 1
"""

# KEYS: session key, [user index]. ARGV: changed (object of JSON texts), deleted (array),
# ttl ms, now (s), user or '', member, index ttl ms.
_UPDATE = """
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
local rec = cjson.decode(raw)
if tonumber(rec.expires) <= tonumber(ARGV[4]) then return 0 end
for k, v in pairs(cjson.decode(ARGV[1])) do rec.data[k] = v end
for _, k in ipairs(cjson.decode(ARGV[2])) do rec.data[k] = nil end
if ARGV[5] ~= '' then rec.user = ARGV[5] end
redis.call('SET', KEYS[1], cjson.encode(rec), 'PX', ARGV[3])
if KEYS[2] then
  redis.call('SADD', KEYS[2], ARGV[6])
  if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[7]) then
    redis.call('PEXPIRE', KEYS[2], ARGV[7])
  end
end
return 1
"""

# KEYS: a failure counter. ARGV: now, now - window (both seconds), window, limit, outcome,
# a fresh member. Returns the seconds until fewer than limit failures remain ('0': now).
_ATTEMPT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
local n, limit = redis.call('ZCARD', KEYS[1]), tonumber(ARGV[4])
if n >= limit then
  local oldest = redis.call('ZRANGE', KEYS[1], n - limit, n - limit, 'WITHSCORES')
  return tostring(tonumber(oldest[2]) + tonumber(ARGV[3]) - tonumber(ARGV[1]))
end
if ARGV[5] == 'failure' then
  redis.call('ZADD', KEYS[1], ARGV[1], ARGV[6])
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -limit - 1)
  redis.call('EXPIRE', KEYS[1], ARGV[3])
elseif ARGV[5] == 'success' then
  redis.call('DEL', KEYS[1])
end
return '0'
"""


# KEYS: user index. ARGV: member, index ttl ms. The index outlives its longest session.
_INDEX = """
redis.call('SADD', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 1
"""


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


class RedisStore:
    """Session records in Redis via ``redis.asyncio`` (hiredis parses replies when installed)."""

    name = "redis"

    def __init__(
        self,
        client: Redis | RedisCluster,
        *,
        prefix: str = "campus:",
        clock: Clock = time.time,
        timeout: float | None = None,
    ) -> None:
        self._redis = client
        self._prefix = prefix
        self._clock = clock
        # One deadline per operation, the client's socket timeout by default. Without it a
        # Redis that accepts connections but never answers costs several socket timeouts
        # (the connection handshake's replies, then the retry's), not one.
        self._timeout = timeout if timeout is not None else _socket_timeout(client)
        self._cluster = isinstance(client, RedisCluster)
        self._create = client.register_script(_CREATE)
        self._update = client.register_script(_UPDATE)
        self._index = client.register_script(_INDEX)
        self._attempt = client.register_script(_ATTEMPT)
        # Cluster clients route each key to its node: no shared pipeline for them.
        self._reads = None if isinstance(client, RedisCluster) else ReadBatcher(client)

    @property
    def client(self) -> Redis | RedisCluster:
        """The connection pool, for other users of the same Redis (closed with the store)."""
        return self._redis

    def key(self, sid: str) -> str:
        """The Redis key of a session id (public so tests and tools can find a record)."""
        return self._prefix + _digest(sid)

    def user_key(self, user: str) -> str:
        return self._prefix + "user:" + _digest(user)

    async def load(self, sid: str, *, touch: int | None) -> SessionRecord | None:
        key = self.key(sid)
        command = ("GET", key) if touch is None else ("GETEX", key, "PX", touch * 1000)
        if self._reads is not None:
            raw = await self._call(self._reads.execute(*command))
        else:
            raw = await self._call(self._redis.execute_command(*command))
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
            self._index_ttl_ms(record.expires),
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
            ttl * 1000,
        ]
        if not self._cluster:
            return bool(await self._call(self._update(keys=keys, args=args)))
        return await self._call(self._update_in_slots(keys, args, sid=sid, user=user, ttl=ttl))

    async def _create_in_slots(
        self, sid: str, record: SessionRecord, *, ttl: int, replaces: str | None
    ) -> None:
        """Cluster: the old id goes first, so a failure half-way never leaves it valid."""
        if replaces is not None:
            await self._redis.delete(self.key(replaces))
        await self._redis.set(self.key(sid), encode_record(record), px=ttl * 1000)
        if record.user is not None:
            index_ttl = self._index_ttl_ms(record.expires)
            await self._index(keys=[self.user_key(record.user)], args=[_digest(sid), index_ttl])

    async def _update_in_slots(
        self, keys: list[str], args: list[str | int], *, sid: str, user: str | None, ttl: int
    ) -> bool:
        """Cluster: merge into the session key alone, then index it if it still exists."""
        if not await self._update(keys=keys, args=args):
            return False
        if user is not None:
            await self._index(keys=[self.user_key(user)], args=[_digest(sid), ttl * 1000])
        return True

    async def delete(self, sid: str) -> None:
        await self._call(self._redis.delete(self.key(sid)))

    async def delete_user(self, user: str) -> int:
        index = self.user_key(user)
        members = await self._call(self._redis.smembers(index))
        keys = [self._prefix + (m.decode() if isinstance(m, bytes) else m) for m in members]
        deleted: int = await self._call(self._redis.delete(*keys, index)) if keys else 0
        if keys:
            deleted -= 1  # the index itself
        return max(deleted, 0)

    async def count(self) -> int:
        pattern = _glob_escape(self._prefix) + "?" * 64
        total = 0
        async for _ in self._scan(pattern):
            total += 1
        return total

    async def ping(self) -> None:
        await self._call(self._redis.ping())

    async def close(self) -> None:
        with contextlib.suppress(RedisError, RedisClusterException, OSError):
            await close(self._redis)

    def _index_ttl_ms(self, expires: int) -> int:
        return max(int((expires - self._clock()) * 1000), 1000)

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
                return await awaitable
        except TimeoutError:
            raise StoreUnavailable(f"redis: no answer within {self._timeout}s") from None
        except (RedisError, RedisClusterException, OSError) as exc:
            # RedisClusterException is not a RedisError: e.g. no node of the Cluster answers.
            message = " ".join(str(exc).split())  # Sentinel's lists every client's repr
            raise StoreUnavailable(f"redis: {message[:200]}") from None

    def failure_key(self, key: str) -> str:
        """The Redis key of a login-failure counter: hashed, so no email sits in Redis."""
        # surrogatepass: a key built from JSON input may hold a lone surrogate.
        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
        return self._prefix + "login:" + digest

    async def attempt(self, key: str, outcome: Attempt, *, window: int, limit: int) -> float:
        now = self._clock()
        args: list[str | int] = [repr(now), repr(now - window), window, limit, outcome.value]
        args.append(secrets.token_hex(8))  # the member: unique even for equal times
        raw = await self._call(self._attempt(keys=[self.failure_key(key)], args=args))
        return max(float(raw), 0.0)


def _socket_timeout(client: Redis | RedisCluster) -> float | None:
    kwargs: dict[str, Any] = client.get_connection_kwargs()
    timeout = kwargs.get("socket_timeout")
    return float(timeout) if isinstance(timeout, int | float) else None

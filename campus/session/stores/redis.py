"""The Redis store: shared by every process and machine, the production default.

- Keys are ``prefix + SHA-256(session id)``: a copy of Redis (a dump, a replica, a MONITOR
  log) holds no id that a cookie could carry.
- A read is one command: ``GETEX`` returns the record and pushes its idle expiry together.
- A write is one command: a Lua script that merges only the changed top-level keys into the
  record *if it still exists*, so concurrent requests keep each other's writes and a request
  in flight cannot resurrect a session that logout, regenerate or revoke destroyed.
- Each user has an index set (``prefix + "user:" + SHA-256(user)``) of their session keys,
  for "log out everywhere".
- Login-failure counters are sorted sets of failure times under ``prefix + "login:" +
  SHA-256(key)``: one single-key script per check (Redis Cluster safe), at most ``limit``
  entries each, expiring ``window`` seconds after the last failure.
- Driver errors never leave this module: they become :class:`StoreUnavailable`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
import time
from collections.abc import Awaitable, Mapping
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from campus.session.store import (
    Attempt,
    Clock,
    SessionRecord,
    StoreUnavailable,
    decode_record,
    encode_record,
)

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


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


class RedisStore:
    """Session records in Redis via ``redis.asyncio`` (hiredis parses replies when installed)."""

    name = "redis"

    def __init__(
        self, client: aioredis.Redis, *, prefix: str = "campus:", clock: Clock = time.time
    ) -> None:
        self._redis = client
        self._prefix = prefix
        self._clock = clock
        self._create = client.register_script(_CREATE)
        self._update = client.register_script(_UPDATE)
        self._attempt = client.register_script(_ATTEMPT)

    @property
    def client(self) -> aioredis.Redis:
        """The connection pool, for other users of the same Redis (closed with the store)."""
        return self._redis

    def key(self, sid: str) -> str:
        """The Redis key of a session id (public so tests and tools can find a record)."""
        return self._prefix + _digest(sid)

    def user_key(self, user: str) -> str:
        return self._prefix + "user:" + _digest(user)

    async def load(self, sid: str, *, touch: int | None) -> SessionRecord | None:
        key = self.key(sid)
        if touch is None:
            raw = await self._call(self._redis.get(key))
        else:
            raw = await self._call(self._redis.getex(key, px=touch * 1000))
        if raw is None:
            return None
        record = decode_record(raw)
        if record is None or record.expires <= self._clock():
            return None
        return record

    async def create(
        self, sid: str, record: SessionRecord, *, ttl: int, replaces: str | None = None
    ) -> None:
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
        if user is not None:
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
        return bool(await self._call(self._update(keys=keys, args=args)))

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
        with contextlib.suppress(RedisError, OSError):
            await self._redis.aclose()

    def _index_ttl_ms(self, expires: int) -> int:
        return max(int((expires - self._clock()) * 1000), 1000)

    async def _scan(self, pattern: str) -> Any:
        try:
            async for key in self._redis.scan_iter(match=pattern, count=1000):
                yield key
        except (RedisError, OSError, TimeoutError) as exc:
            raise StoreUnavailable(f"redis: {exc}") from None

    @staticmethod
    async def _call(awaitable: Awaitable[T]) -> T:
        try:
            return await awaitable
        except (RedisError, OSError, TimeoutError) as exc:
            raise StoreUnavailable(f"redis: {exc}") from None

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


def connect(url: str, *, timeout: float) -> aioredis.Redis:
    """A client for ``redis://``, ``rediss://`` or ``unix://`` with bounded timeouts.

    One retry without backoff: enough to replace a pooled connection that a Redis restart
    closed, yet an outage still fails within about ``2 * timeout`` instead of hanging.
    """
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    return aioredis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 1),
        health_check_interval=30,
    )

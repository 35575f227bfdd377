"""Carrying sessions over from the Express app (express-session + connect-redis).

On cut-over day the Express app's visitors hold a ``connect.sid`` cookie whose value is
``s:<id>.<signature>``, URL-encoded, where the signature is HMAC-SHA256(secret, id) in base64
without padding (the ``cookie-signature`` package express-session uses). connect-redis keeps
the session as JSON under ``prefix + id``: the app's own fields plus express-session's
``cookie`` object (``expires`` among them).

This module verifies such a cookie (no I/O) and claims its record: reads and deletes it in
one command, so a session is carried over exactly once even when two requests race with the
same cookie. It knows nothing of Tornado, and campus.session knows nothing of it.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote

import redis.asyncio as aioredis
from redis.exceptions import RedisClusterException, RedisError

from campus.session.store import Clock, StoreUnavailable, encode_values

#: express-session cookies are ~80 characters; anything much longer is not worth an HMAC.
MAX_COOKIE_LENGTH = 1024
#: Fields of the carried ``user`` that campus never hands out: no answer carries a password.
_PASSWORD_FIELDS = ("password", "password_hash")


class ExpressSessions:
    """The Express app's sessions in Redis, each readable once."""

    def __init__(
        self,
        client: aioredis.Redis | aioredis.RedisCluster,  # GETDEL is one key: Cluster-safe
        *,
        secrets: Sequence[str],
        prefix: str = "sess:",
        cookie_name: str = "connect.sid",
        clock: Clock = time.time,
    ) -> None:
        if not secrets or not all(secrets):
            raise ValueError("at least one non-empty Express secret is needed")
        self._redis = client
        self._keys = [secret.encode() for secret in secrets]
        self.prefix = prefix
        self.cookie_name = cookie_name
        self._clock = clock

    def verify(self, value: str | None) -> str | None:
        """The session id a ``connect.sid`` value names if any secret signed it, else None.

        Like express-session, every secret may verify (rotation); the comparison runs in
        constant time. Unsigned, tampered or garbage values are simply None.
        """
        if not value or len(value) > MAX_COOKIE_LENGTH:
            return None
        text = unquote(value)  # express-session's `cookie` module URL-encodes the value
        if not text.startswith("s:"):
            return None
        sid, dot, given = text[2:].rpartition(".")  # cookie-signature splits at the last dot
        if not dot or not sid:
            return None
        for key in self._keys:
            digest = hmac.new(key, sid.encode(), hashlib.sha256).digest()
            expected = base64.b64encode(digest).rstrip(b"=")
            if hmac.compare_digest(expected, given.encode()):
                return sid
        return None

    async def claim(self, sid: str) -> dict[str, Any] | None:
        """The record's fields minus ``cookie``, deleting the record; None if none is live.

        GETDEL reads and deletes in one command: of two requests racing with one cookie, only
        one gets the record. Raises StoreUnavailable when Redis does not answer.
        """
        try:
            raw = await self._redis.getdel(self.prefix + sid)
        except (RedisError, RedisClusterException, OSError, TimeoutError) as exc:
            raise StoreUnavailable(f"redis: {exc}") from None
        return None if raw is None else self.fields(raw)

    def fields(self, raw: str | bytes) -> dict[str, Any] | None:
        """The session data of a connect-redis record, or None if it is expired or malformed."""
        try:
            record = json.loads(raw)
        except (ValueError, RecursionError):
            return None
        if not isinstance(record, dict):
            return None
        cookie = record.pop("cookie", None)
        if not isinstance(cookie, dict) or not _alive(cookie.get("expires"), self._clock()):
            return None
        user = record.get("user")
        if isinstance(user, dict):
            record["user"] = {k: v for k, v in user.items() if k not in _PASSWORD_FIELDS}
        try:
            encode_values(record)  # e.g. 1e999 parses as inf, which a session cannot hold
        except TypeError:
            return None
        return record


def _alive(expires: object, now: float) -> bool:
    """express-session's own test: no expiry (a browser-session cookie), or not yet past."""
    if expires is None:
        return True  # connect-redis gave the record its default TTL instead
    if not isinstance(expires, str):
        return False
    try:
        moment = datetime.datetime.fromisoformat(expires)  # JSON of a JS Date: ...T...Z
    except ValueError:
        return False
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return now < moment.timestamp()

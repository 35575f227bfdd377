"""The in-process store: the development default, nothing to install.

Unlike express-session's MemoryStore it cannot leak: it holds at most ``max_sessions``
records, evicting the least recently used, and expired records are never returned and are
swept. It keeps each value as JSON text, as Redis does, so handlers never share objects with
the store and code that works against it works against Redis too. It is per-process:
several processes do not share it.

Login-failure counters are bounded the same way: at most ``max_counters`` keys (hashed, so a
long key costs no more than a short one), least recently failed evicted first.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Mapping

from campus.session.store import Attempt, Clock, SessionRecord

#: How many expired records a write may sweep off the cold end on its way (amortised sweep).
_SWEEP_ON_WRITE = 8


class _Entry:
    """One record: its values as JSON texts (never shared objects) and its expiry."""

    __slots__ = ("data", "deadline", "expires", "user")

    def __init__(self, data: dict[str, str], deadline: float, expires: int, user: str | None):
        self.data = data
        self.deadline = deadline  # idle expiry, never later than the absolute one
        self.expires = expires  # absolute expiry
        self.user = user


class MemoryStore:
    """A bounded LRU of JSON records with idle and absolute expiry."""

    name = "memory"

    def __init__(
        self, *, max_sessions: int, clock: Clock = time.time, max_counters: int | None = None
    ) -> None:
        if max_sessions < 1 or (max_counters is not None and max_counters < 1):
            raise ValueError("max_sessions and max_counters must be positive")
        self.max_sessions = max_sessions
        self.max_counters = max_sessions if max_counters is None else max_counters
        self._clock = clock
        # Least recently used first: eviction pops from the front.
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        # SHA-256 of a throttling key -> its failure times, oldest first; least recently
        # failed first.
        self._failures: OrderedDict[bytes, list[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    async def load(self, sid: str, *, touch: int | None) -> SessionRecord | None:
        now = self._clock()
        entry = self._live(sid, now)
        if entry is None:
            return None
        self._entries.move_to_end(sid)
        if touch is not None:
            entry.deadline = min(now + touch, entry.expires)
        return SessionRecord(dict(entry.data), entry.expires, entry.user)

    async def create(
        self, sid: str, record: SessionRecord, *, ttl: int, replaces: str | None = None
    ) -> None:
        if replaces is not None:
            self._entries.pop(replaces, None)
        now = self._clock()
        self._put(sid, record, now + ttl)
        self._sweep_cold_end(now)
        while len(self._entries) > self.max_sessions:
            self._entries.popitem(last=False)

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
        entry = self._live(sid, now)
        if entry is None:
            return False
        data = {k: v for k, v in entry.data.items() if k not in deleted}
        data.update(changed)
        self._put(sid, SessionRecord(data, entry.expires, user or entry.user), now + ttl)
        return True

    async def delete(self, sid: str) -> None:
        self._entries.pop(sid, None)

    async def delete_user(self, user: str) -> int:
        # A scan, not an index: revocation is rare and an index would cost every session memory.
        doomed = [sid for sid, entry in self._entries.items() if entry.user == user]
        for sid in doomed:
            del self._entries[sid]
        return len(doomed)

    async def count(self) -> int:
        self.sweep()
        return len(self._entries)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self._entries.clear()

    def sweep(self) -> int:
        """Drop every expired record; returns how many. The server calls this periodically."""
        now = self._clock()
        expired = [sid for sid, entry in self._entries.items() if entry.deadline <= now]
        for sid in expired:
            del self._entries[sid]
        return len(expired)

    def _live(self, sid: str, now: float) -> _Entry | None:
        entry = self._entries.get(sid)
        if entry is None:
            return None
        if entry.deadline <= now:
            del self._entries[sid]
            return None
        return entry

    def _put(self, sid: str, record: SessionRecord, deadline: float) -> None:
        # A copy: the caller's dict is not the stored one.
        self._entries[sid] = _Entry(
            dict(record.data), min(deadline, record.expires), record.expires, record.user
        )
        self._entries.move_to_end(sid)

    def _sweep_cold_end(self, now: float) -> None:
        for _ in range(_SWEEP_ON_WRITE):
            if not self._entries:
                return
            sid, entry = next(iter(self._entries.items()))
            if entry.deadline > now:
                return
            del self._entries[sid]

    async def attempt(self, key: str, outcome: Attempt, *, window: int, limit: int) -> float:
        now = self._clock()
        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
        live = [t for t in self._failures.get(digest, ()) if t > now - window]
        if len(live) >= limit:
            return live[len(live) - limit] + window - now
        if outcome is Attempt.FAILURE:
            self._failures.pop(digest, None)
            self._failures[digest] = [*live, now][-limit:]
            self._bound_failures(now, window)
        elif outcome is Attempt.SUCCESS or not live:
            self._failures.pop(digest, None)
        return 0.0

    def _bound_failures(self, now: float, window: int) -> None:
        """Drop a few expired counters off the cold end, then evict down to the bound."""
        for _ in range(_SWEEP_ON_WRITE):
            if not self._failures:
                break
            digest, times = next(iter(self._failures.items()))
            if times[-1] > now - window:
                break
            del self._failures[digest]
        while len(self._failures) > self.max_counters:
            self._failures.popitem(last=False)

"""The in-process store: the development default, nothing to install.

Unlike express-session's MemoryStore it cannot leak: it holds at most ``max_sessions``
records, evicting the least recently used, and expired records are never returned and are
swept. It keeps each record as JSON text, exactly as Redis would, so code that works against
it works against Redis too. It is per-process: several processes do not share it.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import NamedTuple

from campus.session.store import Clock, SessionRecord, decode_record, encode_record

#: How many expired records a write may sweep off the cold end on its way (amortised sweep).
_SWEEP_ON_WRITE = 8


class _Entry(NamedTuple):
    raw: str
    deadline: float  # idle expiry, never later than the absolute one
    expires: int  # absolute expiry
    user: str | None


class MemoryStore:
    """A bounded LRU of JSON records with idle and absolute expiry."""

    name = "memory"

    def __init__(self, *, max_sessions: int, clock: Clock = time.time) -> None:
        if max_sessions < 1:
            raise ValueError("max_sessions must be positive")
        self.max_sessions = max_sessions
        self._clock = clock
        # Least recently used first: eviction pops from the front.
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    async def load(self, sid: str, *, touch: int | None) -> SessionRecord | None:
        now = self._clock()
        entry = self._live(sid, now)
        if entry is None:
            return None
        self._entries.move_to_end(sid)
        if touch is not None:
            self._entries[sid] = entry._replace(deadline=min(now + touch, entry.expires))
        return decode_record(entry.raw)

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
        record = decode_record(entry.raw) if entry is not None else None
        if record is None:
            return False
        record.data.update(changed)
        for key in deleted:
            record.data.pop(key, None)
        if user is not None:
            record.user = user
        self._put(sid, record, now + ttl)
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
        self._entries[sid] = _Entry(
            encode_record(record), min(deadline, record.expires), record.expires, record.user
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

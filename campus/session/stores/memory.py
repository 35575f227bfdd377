"""The in-process store: the development default, nothing to install.

Unlike express-session's MemoryStore it cannot leak: it holds at most ``max_sessions``
records, evicting the least recently used, and expired records are never returned and are
swept. It keeps each value as JSON text, as Redis does, so handlers never share objects with
the store and code that works against it works against Redis too. It is per-process:
several processes do not share it.

It keeps a per-user index (user -> ids; the id alone while a user has one session) for "log
out everywhere" and "Your sessions", kept in step with every insert, delete, expiry and
eviction, so neither scans the whole store.

Login-attempt counters are bounded the same way: at most ``max_counters`` keys (hashed, so a
long key costs no more than a short one), least recently counted evicted first. A reservation
needs no lock: nothing awaits between the check and the count, so it is atomic in-process.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence

from campus.session.store import MAX_LISTED, Clock, LiveSession, SessionRecord, session_ref

#: How many expired records a write may sweep off the cold end on its way (amortised sweep).
_SWEEP_ON_WRITE = 8


class _Entry:
    """One record: its values as JSON texts (never shared objects) and its expiry.

    ``data`` is a tuple of (key, JSON text) pairs rather than a dict: 80 bytes less per
    session, and ``dict(pairs)`` is as quick as the copy a dict would need on every read.
    """

    __slots__ = ("data", "deadline", "expires", "user")

    def __init__(
        self, data: tuple[tuple[str, str], ...], deadline: float, expires: int, user: str | None
    ):
        self.data = data
        self.deadline = deadline  # idle expiry, never later than the absolute one
        self.expires = expires  # absolute expiry
        self.user = user


class MemoryStore:
    """A bounded LRU of JSON records with idle and absolute expiry."""

    name = "memory"

    def __init__(
        self,
        *,
        max_sessions: int = 100_000,
        clock: Clock = time.time,
        max_counters: int | None = None,
    ) -> None:
        if max_sessions < 1 or (max_counters is not None and max_counters < 1):
            raise ValueError("max_sessions and max_counters must be positive")
        self.max_sessions = max_sessions
        self.max_counters = max_sessions if max_counters is None else max_counters
        self._clock = clock
        # Least recently used first: eviction pops from the front.
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        # user -> the ids of their sessions held here: the id itself while there is one (most
        # users; a set of one would cost ~220 bytes per session), a set from the second on.
        self._by_user: dict[str, str | set[str]] = {}
        # SHA-256 of a throttling key -> its attempts (time, attempt id), oldest first; least
        # recently counted first.
        self._attempts: OrderedDict[bytes, list[tuple[float, str]]] = OrderedDict()

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
            self._drop(replaces)
        now = self._clock()
        self._put(sid, record, now + ttl)
        self._sweep_cold_end(now)
        while len(self._entries) > self.max_sessions:
            self._drop(next(iter(self._entries)))

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
        data = {k: v for k, v in entry.data if k not in deleted}
        data.update(changed)
        self._put(sid, SessionRecord(data, entry.expires, user or entry.user), now + ttl)
        return True

    async def delete(self, sid: str) -> None:
        self._drop(sid)

    async def delete_user(self, user: str) -> int:
        doomed = self._sids_of(user)
        for sid in doomed:
            self._drop(sid)
        return len(doomed)

    async def sessions_of(self, user: str) -> list[LiveSession]:
        now = self._clock()
        entries = []
        for sid in self._sids_of(user):
            entry = self._live(sid, now)
            if entry is not None:
                entries.append((sid, entry))
        entries.sort(key=lambda item: item[1].expires, reverse=True)
        return [
            LiveSession(
                session_ref(sid), SessionRecord(dict(e.data), e.expires, e.user), e.deadline
            )
            for sid, e in entries[:MAX_LISTED]
        ]

    async def end_sessions(self, user: str, refs: Sequence[str]) -> int:
        wanted = set(refs)
        doomed = [sid for sid in self._sids_of(user) if session_ref(sid) in wanted]
        now = self._clock()
        ended = sum(self._live(sid, now) is not None for sid in doomed)
        for sid in doomed:
            self._drop(sid)
        return ended

    async def count(self) -> int:
        self.sweep()
        return len(self._entries)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self._entries.clear()
        self._by_user.clear()

    def sweep(self) -> int:
        """Drop every expired record; returns how many. The server calls this periodically."""
        now = self._clock()
        expired = [sid for sid, entry in self._entries.items() if entry.deadline <= now]
        for sid in expired:
            self._drop(sid)
        return len(expired)

    def _live(self, sid: str, now: float) -> _Entry | None:
        entry = self._entries.get(sid)
        if entry is None:
            return None
        if entry.deadline <= now:
            self._drop(sid)
            return None
        return entry

    def _put(self, sid: str, record: SessionRecord, deadline: float) -> None:
        old = self._entries.get(sid)
        if old is not None and old.user != record.user:
            self._unindex(sid, old.user)
        # Not the caller's dict: what the store holds changes only through the store.
        self._entries[sid] = _Entry(
            tuple(record.data.items()), min(deadline, record.expires), record.expires, record.user
        )
        self._entries.move_to_end(sid)
        if record.user is not None:
            self._index(sid, record.user)

    def _drop(self, sid: str) -> None:
        """Remove a record and its index entry (every removal goes through here)."""
        entry = self._entries.pop(sid, None)
        if entry is not None:
            self._unindex(sid, entry.user)

    def _sids_of(self, user: str) -> list[str]:
        sids = self._by_user.get(user)
        if sids is None:
            return []
        return [sids] if isinstance(sids, str) else list(sids)

    def _index(self, sid: str, user: str) -> None:
        sids = self._by_user.setdefault(user, sid)
        if isinstance(sids, set):
            sids.add(sid)
        elif sids != sid:
            self._by_user[user] = {sids, sid}

    def _unindex(self, sid: str, user: str | None) -> None:
        if user is None:
            return
        sids = self._by_user.get(user)
        if isinstance(sids, set):
            sids.discard(sid)
            if len(sids) == 1:
                self._by_user[user] = sids.pop()  # back to the plain id
        elif sids == sid:
            del self._by_user[user]

    def _sweep_cold_end(self, now: float) -> None:
        for _ in range(_SWEEP_ON_WRITE):
            if not self._entries:
                return
            sid, entry = next(iter(self._entries.items()))
            if entry.deadline > now:
                return
            self._drop(sid)

    async def reserve(self, keys: Sequence[str], attempt: str, *, window: int, limit: int) -> float:
        now = self._clock()
        digests = [_digest(key) for key in dict.fromkeys(keys)]
        counted = [self._recent(digest, now, window) for digest in digests]
        waits = [
            live[len(live) - limit][0] + window - now for live in counted if len(live) >= limit
        ]
        if waits:
            return max(max(waits), 0.001)
        for digest, live in zip(digests, counted, strict=True):
            self._attempts.pop(digest, None)  # to the warm end
            self._attempts[digest] = [*live, (now, attempt)]
        self._bound_attempts(now, window)
        return 0.0

    async def give_back(
        self, attempt: str, keys: Sequence[str], *, forget: Sequence[str] = ()
    ) -> None:
        for key in keys:
            digest = _digest(key)
            kept = [a for a in self._attempts.get(digest, ()) if a[1] != attempt]
            if kept:
                self._attempts[digest] = kept
            else:
                self._attempts.pop(digest, None)
        for key in forget:
            self._attempts.pop(_digest(key), None)

    def _recent(self, digest: bytes, now: float, window: int) -> list[tuple[float, str]]:
        live = [a for a in self._attempts.get(digest, ()) if a[0] > now - window]
        if not live:
            self._attempts.pop(digest, None)
        return live

    def _bound_attempts(self, now: float, window: int) -> None:
        """Drop a few expired counters off the cold end, then evict down to the bound."""
        for _ in range(_SWEEP_ON_WRITE):
            if not self._attempts:
                break
            digest, times = next(iter(self._attempts.items()))
            if times[-1][0] > now - window:
                break
            del self._attempts[digest]
        while len(self._attempts) > self.max_counters:
            self._attempts.popitem(last=False)


def _digest(key: str) -> bytes:
    # surrogatepass: a key built from JSON input may hold a lone surrogate.
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()

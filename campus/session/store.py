"""The contract between the session layer and its storage backends.

A store knows nothing of HTTP. It keeps one record per session id: the session's data, its
absolute deadline and the user it belongs to (for "log out everywhere"). Records travel as
JSON text — never pickle — in one format shared by every store, so the in-process store
behaves like a remote one and a value that round-trips through one round-trips through all.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

Clock = Callable[[], float]

#: orjson when it is installed (it is a dependency), else json: the same answers, slower.
_fast_loads: Callable[[str | bytes], Any]
try:
    from orjson import loads as _orjson_loads

    _fast_loads = _orjson_loads
except ModuleNotFoundError:
    _fast_loads = json.loads

#: 32 random bytes, URL-safe base64 without padding: 256 bits, 43 characters.
_ID_BYTES = 32
_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{43}")


class StoreUnavailable(Exception):
    """The store did not answer (down, timed out, refused). The only error a store raises."""


def new_session_id() -> str:
    """A fresh, unguessable session id (256 bits from the OS's CSPRNG)."""
    return secrets.token_urlsafe(_ID_BYTES)


def is_session_id(value: str) -> bool:
    """Whether *value* has the shape of an id we issue (cheap check before any store I/O)."""
    return _ID_PATTERN.fullmatch(value) is not None


@dataclass(slots=True)
class SessionRecord:
    """What a store keeps for one session.

    ``data`` maps each top-level key to that value's JSON text: keeping values encoded lets a
    store merge changed keys without understanding (or re-encoding) them, which matters for
    Redis, whose Lua JSON codec would otherwise mangle numbers and empty lists.
    """

    data: dict[str, str] = field(default_factory=dict)
    expires: int = 0  # absolute deadline, Unix seconds
    user: str | None = None

    def decoded(self) -> dict[str, Any]:
        return {key: loads(text) for key, text in self.data.items()}


#: Compact, strict JSON; one encoder for the process (json.dumps with options builds a new one
#: on every call, which showed up on the request path).
_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


#: 19 digits in a row: an integer that may lie past 64 bits, which orjson (3.13) turns into a
#: float without a word (-2**63 - 1 and 2**64 among them). json keeps every integer exact.
_LONG_NUMBER = re.compile(r"[0-9]{19}")
_LONG_NUMBER_BYTES = re.compile(rb"[0-9]{19}")


def loads(text: str | bytes) -> Any:
    """json.loads, in a quarter of the time: records are decoded on every request.

    orjson refuses a few texts that json takes (lone surrogates) and reads integers past 64
    bits as floats; those go to json, so what a record may hold is json's rule, whichever
    parses it.
    """
    long_number = _LONG_NUMBER_BYTES if isinstance(text, bytes) else _LONG_NUMBER
    if long_number.search(text) is not None:  # type: ignore[arg-type]
        return json.loads(text)
    try:
        return _fast_loads(text)
    except ValueError:  # orjson's JSONDecodeError is one
        return json.loads(text)


def encode_record(record: SessionRecord) -> str:
    return _ENCODER.encode({"data": record.data, "expires": record.expires, "user": record.user})


_NUMBERS = (int, float)  # JSON numbers as json.loads makes them (a bool is no deadline)
_FOREVER = 2.0**62


def decode_record(raw: str | bytes) -> SessionRecord | None:
    """Parse a stored record; anything malformed counts as no session rather than an error."""
    # Every request reads a record: exact type checks, no generator.
    try:
        obj = loads(raw)
        data, expires, user = obj["data"], obj["expires"], obj.get("user")
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    if type(data) is not dict or type(expires) not in _NUMBERS:
        return None
    if user is not None and type(user) is not str:
        return None
    for value in data.values():
        if type(value) is not str:
            return None
    if not -_FOREVER < expires < _FOREVER:  # NaN, Infinity, 1e999: json.loads takes them
        return None
    return SessionRecord(data, int(expires), user)


def encode_values(values: Mapping[str, Any]) -> dict[str, str]:
    """Encode each top-level value on its own; raises TypeError for what JSON cannot hold."""
    return {key: encode_value(key, value) for key, value in values.items()}


def encode_value(key: str, value: Any) -> str:
    try:
        return _ENCODER.encode(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"session[{key!r}] cannot be stored as JSON: {exc}") from None


class SessionStore(Protocol):
    """Where session records live: all the session layer needs of a store.

    Implementations raise only :class:`StoreUnavailable`. Ids are passed raw; a store that
    keeps them outside the process must not keep them in the clear. ``ttl`` is the idle
    timeout in seconds (already capped by the caller at the record's absolute deadline).
    Stores take a clock so that expiry is testable without sleeping. ``name`` labels the
    store in logs and metrics ("memory", "redis").
    """

    name: str

    async def load(self, sid: str, *, touch: int | None) -> SessionRecord | None:
        """The live record, or None. With ``touch`` set, push its idle expiry in the same trip."""
        ...

    async def create(
        self, sid: str, record: SessionRecord, *, ttl: int, replaces: str | None = None
    ) -> None:
        """Store a record under a new id; delete ``replaces`` (the id it regenerates) with it."""
        ...

    async def update(
        self,
        sid: str,
        changed: Mapping[str, str],
        deleted: list[str],
        *,
        ttl: int,
        user: str | None,
    ) -> bool:
        """Apply only these top-level changes, atomically, to a record that still exists.

        Returns False — writing nothing — when the record is gone (destroyed, revoked,
        expired): a request that was in flight must never bring a session back.
        """
        ...

    async def delete(self, sid: str) -> None:
        """Destroy the record, for good: like :meth:`update`, nothing writes it back."""
        ...

    async def ping(self) -> None:
        """Return once the store answers; raise StoreUnavailable otherwise."""
        ...

    async def close(self) -> None:
        """Release connections and timers; the store is not used afterwards."""
        ...


@dataclass(frozen=True, slots=True)
class LiveSession:
    """One of a user's live sessions, as :meth:`UserSessions.sessions_of` lists it.

    ``ref`` is the store's own name for the session: the SHA-256 (hex) of its id, which the
    store can map back to the record but nobody can turn into the id. ``idle_deadline`` is
    when the session ends unless it is used again (Unix seconds, never past
    ``record.expires``): the store pushes it on every request, so it tells when the session
    was last active without a write per request.
    """

    ref: str
    record: SessionRecord
    idle_deadline: float


#: :meth:`UserSessions.sessions_of` lists at most this many sessions.
MAX_LISTED = 100


def session_ref(sid: str) -> str:
    """The ref of a session id (see :class:`LiveSession`)."""
    return hashlib.sha256(sid.encode()).hexdigest()


@runtime_checkable
class UserSessions(Protocol):
    """The per-user index: log a user out everywhere, list and end their sessions.

    Optional beside :class:`SessionStore`: the session layer never calls it; an application
    that offers "log out everywhere" or "Your sessions" needs it (and tells the store whose
    session is whose with ``SessionManager(user_of=...)``). ``sessions_of`` and
    ``end_sessions`` drop from the user's index any session that is gone.
    """

    async def delete_user(self, user: str) -> int:
        """Destroy every session of ``user``; return how many there were. For good, as
        :meth:`SessionStore.delete`."""
        ...

    async def sessions_of(self, user: str) -> list[LiveSession]:
        """The live sessions of ``user``, in no particular order: all of them, or the
        :data:`MAX_LISTED` with the latest absolute deadlines (the newest sign-ins) when
        there are more — one valid account must not buy an unbounded amount of work.
        """
        ...

    async def end_sessions(self, user: str, refs: Sequence[str]) -> int:
        """Destroy those sessions of ``user`` (refs of other users' sessions are ignored);
        return how many there were. Like :meth:`SessionStore.delete`, for good: a request of
        an ended session that is still in flight cannot write it back.
        """
        ...

    async def count(self) -> int:
        """How many sessions the store holds, everybody's (an operator's figure: may scan)."""
        ...


@runtime_checkable
class AttemptCounters(Protocol):
    """Login throttling's counters: attempts per key within a sliding window.

    An attempt is counted *before* the password is checked (reserved) and given back when it
    succeeds, so guesses sent at once cannot all pass a check that none of them has counted
    yet. A store that keeps keys outside the process hashes them, keeps at most ``limit``
    attempts per key and lets a key expire ``window`` seconds after its last attempt.
    Implementations raise only :class:`StoreUnavailable`.
    """

    async def reserve(self, keys: Sequence[str], attempt: str, *, window: int, limit: int) -> float:
        """Count ``attempt`` against every key in ``keys``, or against none.

        Returns 0.0 when it was counted; otherwise, when some key already holds ``limit``
        attempts within the last ``window`` seconds, counts nothing and returns the seconds
        until every key has room again. Atomic per key: of N concurrent reservations on one
        key, at most the free slots succeed.
        """
        ...

    async def give_back(
        self, attempt: str, keys: Sequence[str], *, forget: Sequence[str] = ()
    ) -> None:
        """Un-count ``attempt`` from ``keys``, and forget every attempt of the keys in
        ``forget`` (a successful login clears its email's count, not its address's).
        """
        ...

"""The session a handler sees: a plain mapping of JSON values, plus its id.

It references no store, no request and no bookkeeping of what to save: that belongs to the
request's :class:`~campus.session.manager.PendingSession`, which compares the mapping with
what it loaded when the response is about to go out. The session only remembers which keys
could have changed: those assigned, and those whose value left it as a dict or a list (a
nested edit needs a reference to one). A value nobody took out cannot have changed, so a
request that only reads strings (``GET /api/me``) has nothing to compare. Data and methods
live in separate namespaces — ``session["id"]`` is data, ``session.id`` is the id.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any

from campus.session.store import encode_value, new_session_id

#: Values a caller cannot change in place: handing one out exposes nothing.
_IMMUTABLE = frozenset({str, int, float, bool, type(None)})


class Session(MutableMapping[str, Any]):
    """Dict-like session data (string keys, JSON values) with ``id``, ``regenerate()`` and
    ``destroy()``.

    Once the session is committed (the response's headers are on their way, or the handler
    called ``save_session()``), changing it raises ``RuntimeError``: the change could no
    longer reach the store or the cookie.
    """

    # Private state, read by the manager module of this package and nobody else:
    # _id: the id, None until needed (a new session, or after regenerate/destroy);
    # _destroyed: destroy() was called (an empty session then stores nothing, whatever the
    # policy); _sealed: why the session can no longer change (None while it can);
    # _exposed: keys assigned, or whose (mutable) value was handed out: the only ones whose
    # JSON may differ from what was loaded.
    __slots__ = ("_data", "_destroyed", "_exposed", "_id", "_sealed")

    def __init__(self, data: Mapping[str, Any] | None = None, *, sid: str | None = None) -> None:
        """A new session, or (with ``sid``) the one a store holds under that id."""
        self._data: dict[str, Any] = dict(data) if data is not None else {}
        self._id = sid
        self._destroyed = False
        self._sealed: str | None = None
        self._exposed: set[str] = set()

    @property
    def id(self) -> str:
        """The session id; a new session gets one the first time anyone asks."""
        if self._id is None:
            self._id = new_session_id()
        return self._id

    def regenerate(self) -> None:
        """Keep the data under a new id; the old record is deleted (session fixation defence)."""
        self._check_open()
        self._id = None

    def destroy(self) -> None:
        """Forget the data and the id: the record is deleted and the cookie expired."""
        self._check_open()
        self._id = None
        self._data.clear()
        self._destroyed = True

    def _check_open(self) -> None:
        if self._sealed is not None:
            raise RuntimeError(f"session changed after {self._sealed}")

    # -- the mapping -------------------------------------------------------------------------

    def __getitem__(self, key: str) -> Any:
        value = self._data[key]
        if type(value) not in _IMMUTABLE:
            self._exposed.add(key)
        return value

    def __setitem__(self, key: str, value: Any) -> None:
        self._check_open()
        if not isinstance(key, str):
            raise TypeError(f"session keys are strings, not {type(key).__name__}")
        encode_value(key, value)  # fail here, at the assignment, not when the response leaves
        self._data[key] = value
        self._exposed.add(key)

    def __delitem__(self, key: str) -> None:
        self._check_open()
        del self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def get(self, key: str, default: Any = None) -> Any:
        if key in self._data:
            return self[key]
        return default

    def clear(self) -> None:
        self._check_open()
        self._data.clear()

    def __repr__(self) -> str:
        return f"<Session keys={sorted(self._data)}>"

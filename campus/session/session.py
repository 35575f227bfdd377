"""The session a handler sees: a plain mapping of JSON values, plus its id and lifecycle.

It references no store and no request: loading and saving belong to the
:class:`~campus.session.manager.SessionManager`. Data and methods live in separate
namespaces — ``session["id"]`` is data, ``session.id`` is the id.

Changes are found the way express-session finds them — by comparing JSON, not by dirty
flags — so nested edits (``session["cart"].append(x)``) count too. The comparison is per
top-level key, which is what lets the store merge concurrent writes.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any

from campus.session.store import encode_value, new_session_id


class Session(MutableMapping[str, Any]):
    """Dict-like session data with ``id``, ``is_new``, ``regenerate()`` and ``destroy()``."""

    __slots__ = ("_data", "_doomed", "_id", "_snapshot", "destroyed", "expires")

    def __init__(
        self,
        sid: str | None = None,
        data: dict[str, Any] | None = None,
        *,
        snapshot: dict[str, str] | None = None,
        expires: int | None = None,
    ) -> None:
        """A loaded session (``sid`` and its stored ``snapshot``) or, by default, a new one."""
        self._id = sid
        self._data: dict[str, Any] = data if data is not None else {}
        # Each top-level key's JSON as stored; empty for a session the store does not hold.
        self._snapshot: dict[str, str] = snapshot if snapshot is not None else {}
        #: The absolute deadline of a stored session (Unix seconds); None until first saved.
        self.expires = expires
        # The id this request loaded and has since given up (regenerate/destroy): the store
        # record to delete when the session is saved.
        self._doomed: str | None = None
        #: Set by destroy(): the visitor's cookie should go too (cleared once saved).
        self.destroyed = False

    @property
    def id(self) -> str:
        """The session id; a new session gets one the first time anyone asks."""
        if self._id is None:
            self._id = new_session_id()
        return self._id

    @property
    def is_new(self) -> bool:
        """True until the store holds this id: a new visitor, or after regenerate/destroy."""
        return self.expires is None

    @property
    def doomed(self) -> str | None:
        return self._doomed

    def regenerate(self) -> None:
        """Move the data to a new id and drop the old record (session fixation defence)."""
        self._give_up_id()
        self._snapshot = {}

    def destroy(self) -> None:
        """Forget the data and the id; the stored record is deleted when the request ends."""
        self._give_up_id()
        self._snapshot = {}
        self._data.clear()
        self.destroyed = True

    def changes(self) -> tuple[dict[str, str], list[str]]:
        """Top-level keys set or changed since load (as JSON) and keys deleted since load.

        Raises TypeError naming the key when a value (perhaps nested) is not JSON.
        """
        changed = {}
        for key, value in self._data.items():
            text = encode_value(key, value)
            if self._snapshot.get(key) != text:
                changed[key] = text
        deleted = [key for key in self._snapshot if key not in self._data]
        return changed, deleted

    def encoded(self) -> dict[str, str]:
        """Every key as JSON, for writing a whole new record."""
        return {key: encode_value(key, value) for key, value in self._data.items()}

    def mark_saved(self, changed: dict[str, str], deleted: list[str], expires: int) -> None:
        """Record what the store now holds under ``id``, so that saving again is a no-op."""
        snapshot = {k: v for k, v in self._snapshot.items() if k not in deleted}
        snapshot.update(changed)
        self._snapshot = snapshot
        self.expires = expires
        self.settle()

    def settle(self) -> None:
        """The old record is gone and the cookie dealt with: nothing left to clean up."""
        self._doomed = None
        self.destroyed = False

    def mark_dropped(self) -> None:
        """The store no longer holds this session (someone destroyed it); stay anonymous."""
        self._id = None
        self._snapshot = {}
        self._data.clear()
        self.expires = None
        self.settle()

    def _give_up_id(self) -> None:
        if not self.is_new and self._doomed is None:
            self._doomed = self._id
        self._id = None
        self.expires = None

    # -- the mapping -------------------------------------------------------------------------

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        if not isinstance(key, str):
            raise TypeError(f"session keys are strings, not {type(key).__name__}")
        encode_value(key, value)  # fail here, at the assignment, not when the response leaves
        self._data[key] = value

    def __delitem__(self, key: str) -> None:
        del self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def clear(self) -> None:
        self._data.clear()

    def __repr__(self) -> str:
        state = "new" if self.is_new else "stored"
        return f"<Session {state} keys={sorted(self._data)}>"

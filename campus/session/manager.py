"""Loading and committing sessions: every policy decision, none of the HTTP plumbing.

:meth:`SessionManager.load` turns a cookie value into a :class:`PendingSession`: the
:class:`~campus.session.session.Session` handlers see, plus what the store held when it was
loaded. When the response is about to go out, :meth:`PendingSession.commit` compares the two,
once, and answers with a :class:`Commit`: the store write this request owes (if any) and the
cookie that follows it. The mixin runs the write, then sets the cookie, then sends the response.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from campus.session.cookie import CookiePolicy, CookieSigner
from campus.session.session import Session
from campus.session.store import Clock, SessionRecord, SessionStore, encode_value

#: A rolling cookie is re-sent at most this often (seconds). Re-sending on every response
#: costs an HMAC per request and lets a slow read clobber the cookie a concurrent login
#: just set; the store's idle expiry is pushed on every request regardless.
ROLLING_COOKIE_INTERVAL = 60


@dataclass(frozen=True, slots=True)
class SessionPolicy:
    """express-session's policy choices, by their names there."""

    idle_timeout: int = 1800
    absolute_timeout: int = 28800
    rolling: bool = True
    save_uninitialized: bool = False


@dataclass(frozen=True, slots=True)
class CookieUpdate:
    """What the response must do with the session cookie: set ``value``, or clear it."""

    value: str | None  # None: expire the cookie


@dataclass(frozen=True, slots=True)
class Commit:
    """What one request owes: first the store write (if any), then the cookie.

    ``write`` returns whether the write landed; when it did not (the session was destroyed
    while the request ran), the cookie is not sent: the session stays destroyed.
    """

    write: Callable[[], Awaitable[bool]] | None  # None: nothing to store (a read-only request)
    cookie: CookieUpdate | None  # None: leave the cookie as the client has it


#: The commit of most requests: nothing to store, no cookie due.
NOTHING = Commit(None, None)


def no_user(_: Mapping[str, Any]) -> str | None:
    return None


class SessionManager:
    """Loads and commits sessions: a store, the cookie's secrets and policy, express-session's
    policy choices.

    One line builds a working manager: ``SessionManager(store, secrets=["..."])``. The cookie's
    ``Max-Age`` follows ``idle_timeout`` unless ``cookie`` sets one. ``user_of`` names the user
    a session belongs to, for "log out everywhere" (by default nobody's).
    """

    def __init__(
        self,
        store: SessionStore,
        *,
        secrets: str | Sequence[str],
        idle_timeout: int = 1800,
        absolute_timeout: int = 28800,
        rolling: bool = True,
        save_uninitialized: bool = False,
        cookie: CookiePolicy | None = None,
        user_of: Callable[[Mapping[str, Any]], str | None] = no_user,
        clock: Clock = time.time,
    ) -> None:
        if idle_timeout < 1 or absolute_timeout < 1:
            raise ValueError("idle_timeout and absolute_timeout must be at least 1 second")
        self.store = store
        self.signer = CookieSigner([secrets] if isinstance(secrets, str) else secrets, clock=clock)
        self.cookie = cookie if cookie is not None else CookiePolicy()
        #: The cookie's Max-Age: the policy's own, else the idle timeout.
        max_age = self.cookie.max_age
        self.cookie_max_age = idle_timeout if max_age is None else max_age
        self.policy = SessionPolicy(idle_timeout, absolute_timeout, rolling, save_uninitialized)
        self.user_of = user_of
        self.clock = clock
        self._touch = idle_timeout if rolling else None
        self._cookie_interval = min(ROLLING_COOKIE_INTERVAL, idle_timeout // 10)

    async def load(self, cookie_value: str | Sequence[str] | None) -> PendingSession:
        """The session a cookie names, or a new empty one. May raise StoreUnavailable.

        *cookie_value* may be several values of the session cookie (see
        :func:`~campus.session.cookie.cookie_values`): the first that names a live session
        wins. A value that does not verify costs no store I/O; an id the store does not hold
        (expired, destroyed, never issued) is never adopted: the visitor gets a new id.
        """
        values = [cookie_value] if isinstance(cookie_value, str) else list(cookie_value or ())
        for value in values:
            verified = self.signer.verify(
                self.cookie.name, value, max_age=self.policy.absolute_timeout
            )
            if verified is None:
                continue
            sid, signed_at = verified
            record = await self.store.load(sid, touch=self._touch)
            if record is None:
                continue
            try:
                data = record.decoded()
            except ValueError:  # a record someone edited by hand: treat as no session
                continue
            return PendingSession(
                self, Session(data, sid=sid), had_cookie=True, stored=(sid, record, signed_at)
            )
        return PendingSession(self, Session(), had_cookie=bool(values))

    def _rolling_cookie(self, pending: PendingSession, sid: str, now: float) -> CookieUpdate | None:
        signed_at = pending._signed_at
        if not self.policy.rolling or (
            signed_at is not None and now - signed_at < self._cookie_interval
        ):
            return None
        pending._signed_at = now
        return CookieUpdate(self.signer.sign(self.cookie.name, sid))

    def _ttl(self, expires: int, now: float) -> int:
        return min(self.policy.idle_timeout, int(expires - now))


class PendingSession:
    """One request's session from load to commit: the :class:`Session` and what the store held.

    Created by :meth:`SessionManager.load`; :meth:`commit` is called once, as the response is
    about to go out, and seals the session.
    """

    __slots__ = (
        "_checked",
        "_committed",
        "_expires",
        "_had_cookie",
        "_manager",
        "_signed_at",
        "_snapshot",
        "_stored_id",
        "session",
    )

    def __init__(
        self,
        manager: SessionManager,
        session: Session,
        *,
        had_cookie: bool,
        stored: tuple[str, SessionRecord, float] | None = None,
    ) -> None:
        self._manager = manager
        self.session = session
        self._had_cookie = had_cookie
        self._committed = self._checked = False
        # What the store holds for this session: its id, each top-level key's JSON, the
        # absolute deadline; and when the client's cookie was signed. Nothing for a new one.
        if stored is None:
            self._stored_id: str | None = None
            self._snapshot: dict[str, str] = {}
            self._expires = 0
            self._signed_at: float | None = None
        else:
            self._stored_id, record, self._signed_at = stored
            self._snapshot, self._expires = record.data, record.expires

    @property
    def committed(self) -> bool:
        """Whether :meth:`commit` (or :meth:`abandon`) ran: nothing is left to decide."""
        return self._committed

    def commit(self, when: str) -> Commit:
        """What to write and which cookie follows; the session cannot change afterwards.

        *when* names the moment ("finish()", "flush()") for the error a later change raises.
        Raises TypeError naming the key when a value (perhaps nested) is not JSON.
        """
        if self._committed:
            raise RuntimeError("this request's session was already committed")
        self._committed = True
        session = self.session
        session._sealed = when
        sid = session._id
        if sid is not None and sid == self._stored_id:
            return self._commit_stored(sid)
        return self._commit_new()

    def abandon(self, when: str) -> None:
        """Commit nothing (the response failed): no write, no cookie, and no more changes."""
        self._committed = True
        self.session._sealed = when

    def check_unchanged(self) -> None:
        """After an early commit (flush, save_session): raise if the session changed since,
        e.g. a nested edit (``session["cart"].append(x)``) no assignment could catch. Once:
        the error response that follows must not fail again."""
        if self._checked:
            return
        self._checked = True
        session = self.session
        changed, deleted = _changes(session, self._snapshot)
        if changed or deleted or session._id != self._stored_id:
            raise RuntimeError(
                f"session changed after {session._sealed}: the change cannot reach the store"
                " or the cookie any more"
            )

    def _commit_stored(self, sid: str) -> Commit:
        """The session the store holds, under the id it was loaded with."""
        manager = self._manager
        changed, deleted = _changes(self.session, self._snapshot)
        now = manager.clock()
        cookie = manager._rolling_cookie(self, sid, now)
        if not (changed or deleted):
            return NOTHING if cookie is None else Commit(None, cookie)
        ttl = manager._ttl(self._expires, now)
        user = manager.user_of(self.session)
        store = manager.store
        self._snapshot = {k: v for k, v in self._snapshot.items() if k not in deleted} | changed

        async def write() -> bool:
            # Only the keys this request changed: concurrent requests keep each other's writes.
            # False when the record is gone: destroyed meanwhile, it stays destroyed.
            return ttl > 0 and await store.update(sid, changed, deleted, ttl=ttl, user=user)

        return Commit(write, cookie)

    def _commit_new(self) -> Commit:
        """A new session, or one whose loaded id was given up (regenerate or destroy)."""
        manager, session = self._manager, self.session
        retired = self._stored_id  # the record this request loaded and gave up, if any
        store = manager.store
        if session._data or (manager.policy.save_uninitialized and not session._destroyed):
            now = manager.clock()
            expires = int(now) + manager.policy.absolute_timeout
            record = SessionRecord(
                {key: encode_value(key, value) for key, value in session._data.items()},
                expires,
                manager.user_of(session),
            )
            sid, ttl = session.id, manager._ttl(expires, now)
            self._stored_id, self._snapshot, self._expires = sid, record.data, expires
            self._signed_at = now

            async def create() -> bool:
                await store.create(sid, record, ttl=ttl, replaces=retired)
                return True

            return Commit(create, CookieUpdate(manager.signer.sign(manager.cookie.name, sid)))
        # Nothing to keep. A cookie that named a session (or a destroyed one) is expired.
        clear = self._had_cookie and (retired is not None or session._destroyed)
        cookie = CookieUpdate(None) if clear else None
        self._stored_id, self._snapshot = session._id, {}
        if retired is None:
            return NOTHING if cookie is None else Commit(None, cookie)

        async def delete() -> bool:
            await store.delete(retired)
            return True

        return Commit(delete, cookie)


def _changes(session: Session, snapshot: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """Top-level keys set or changed (as JSON) and keys deleted, compared with *snapshot*.

    Changes are found the way express-session finds them, by comparing JSON, not by dirty
    flags, so nested edits count too; per top-level key, so the store can merge concurrent
    writes. Only the keys the session says were assigned or handed out as a dict or list are
    encoded: no other value can differ from its snapshot. Raises TypeError naming the key
    when a value is not JSON.
    """
    data = session._data
    changed = {}
    for key in session._exposed:
        if key in data:
            text = encode_value(key, data[key])
            if snapshot.get(key) != text:
                changed[key] = text
    for key in data.keys() - snapshot.keys():  # new keys are assigned ones, but be sure
        if key not in changed:
            changed[key] = encode_value(key, data[key])
    deleted = [key for key in snapshot if key not in data]
    return changed, deleted

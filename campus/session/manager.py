"""Loading and saving sessions: every policy decision, none of the HTTP plumbing.

The :class:`SessionManager` turns a cookie value into a :class:`Session` and, at the end of
the request, a session into store writes plus what to do with the cookie. Handlers reach it
through :class:`~campus.session.mixin.SessionMixin`; tests can drive it directly.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from campus.session.cookie import CookiePolicy, CookieSigner
from campus.session.session import Session
from campus.session.store import Clock, SessionRecord, SessionStore

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


@dataclass(slots=True)
class LoadedSession:
    session: Session
    signed_at: float | None  # when the presented cookie was signed, if it named a live session
    had_cookie: bool


def no_user(_: Mapping[str, Any]) -> str | None:
    return None


class SessionManager:
    """Connects a store, a cookie signer and a policy."""

    def __init__(
        self,
        store: SessionStore,
        signer: CookieSigner,
        cookie: CookiePolicy,
        policy: SessionPolicy,
        *,
        user_of: Callable[[Mapping[str, Any]], str | None] = no_user,
        clock: Clock = time.time,
    ) -> None:
        self.store = store
        self.signer = signer
        self.cookie = cookie
        self.policy = policy
        #: Which user a session belongs to, for "log out everywhere" (None: nobody's).
        self.user_of = user_of
        self._clock = clock

    async def load(self, cookie_value: str | None) -> LoadedSession:
        """The session a cookie names, or a new empty one. May raise StoreUnavailable.

        A cookie that does not verify costs no store I/O; an id the store does not hold
        (expired, destroyed, never issued) is never adopted: the visitor gets a new id.
        """
        verified = self.signer.verify(
            self.cookie.name, cookie_value, max_age=self.policy.absolute_timeout
        )
        had_cookie = cookie_value is not None
        if verified is None:
            return LoadedSession(Session(), None, had_cookie)
        sid, signed_at = verified
        touch = self.policy.idle_timeout if self.policy.rolling else None
        record = await self.store.load(sid, touch=touch)
        if record is None:
            return LoadedSession(Session(), None, had_cookie)
        try:
            data = record.decoded()
        except ValueError:  # a record someone edited by hand: treat as no session
            return LoadedSession(Session(), None, had_cookie)
        session = Session(sid, data, snapshot=record.data, expires=record.expires)
        return LoadedSession(session, signed_at, had_cookie)

    def needs_store(self, loaded: LoadedSession) -> bool:
        """Whether committing must write to the store; when not, :meth:`settle` does it all."""
        session = loaded.session
        if session.is_new:
            return bool(session) or self.policy.save_uninitialized or session.doomed is not None
        changed, deleted = session.changes()
        return bool(changed or deleted)

    def settle(self, loaded: LoadedSession) -> CookieUpdate | None:
        """The cookie for a session that needs no store write (the common, read-only case)."""
        session, now = loaded.session, self._clock()
        if session.is_new:
            destroyed = session.destroyed
            session.settle()
            if destroyed and loaded.had_cookie:
                loaded.had_cookie = False
                return CookieUpdate(None)
            return None
        if not self._cookie_due(loaded.signed_at, now):
            return None
        loaded.signed_at = now
        return CookieUpdate(self.signer.sign(self.cookie.name, session.id))

    async def commit(self, loaded: LoadedSession) -> CookieUpdate | None:
        """Write what changed (only that) and say what the cookie must do.

        Raises TypeError for a value JSON cannot hold, StoreUnavailable when the store fails;
        the cookie is only ever set after the store write succeeded.
        """
        session, now = loaded.session, self._clock()
        if not session.is_new:
            changed, deleted = session.changes()  # encoded once, for the check and the write
            if not (changed or deleted):
                return self.settle(loaded)
            return await self._commit_changes(loaded, changed, deleted, now)
        if not self.needs_store(loaded):
            return self.settle(loaded)
        if session or self.policy.save_uninitialized:
            expires = int(now) + self.policy.absolute_timeout
            record = SessionRecord(session.encoded(), expires, self.user_of(session))
            ttl = self._ttl(expires, now)
            await self.store.create(session.id, record, ttl=ttl, replaces=session.doomed)
            session.mark_saved(record.data, [], expires)
            loaded.signed_at = now
            return CookieUpdate(self.signer.sign(self.cookie.name, session.id))
        assert session.doomed is not None
        await self.store.delete(session.doomed)
        return self.settle(loaded)

    async def _commit_changes(
        self, loaded: LoadedSession, changed: dict[str, str], deleted: list[str], now: float
    ) -> CookieUpdate | None:
        session = loaded.session
        assert session.expires is not None
        ttl = self._ttl(session.expires, now)
        if ttl <= 0 or not await self.store.update(
            session.id, changed, deleted, ttl=ttl, user=self.user_of(session)
        ):
            session.mark_dropped()  # destroyed while we worked: it stays destroyed
            return None
        session.mark_saved(changed, deleted, session.expires)
        return self.settle(loaded)

    def _ttl(self, expires: int, now: float) -> int:
        return min(self.policy.idle_timeout, int(expires - now))

    def _cookie_due(self, signed_at: float | None, now: float) -> bool:
        if not self.policy.rolling:
            return False
        interval = min(ROLLING_COOKIE_INTERVAL, self.policy.idle_timeout // 10)
        return signed_at is None or now - signed_at >= interval

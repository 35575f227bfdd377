"""GET /api/sessions, DELETE /api/sessions/<handle>, POST /api/sessions/end-others.

"Your sessions": where the signed-in user is signed in, and a way to end any of it. The facts
come from the sign-in record written once at login (campus.accounts.signin) and from the
store's idle deadline (pushed by every request anyway), so nothing is written per request to
track activity. Ending a session deletes its record, the same path as logout: a request of that
session still in flight cannot write it back. A handle that is not one of this user's live
sessions is 404 — never 403 — so handles of other users cannot be probed.
"""

from __future__ import annotations

import json
from typing import Any, cast

from campus.accounts.signin import SIGN_IN
from campus.accounts.users import User
from campus.observability.metrics import count_sessions_destroyed
from campus.session.handles import SessionHandles
from campus.session.store import LiveSession, UserSessions, session_ref
from campus.web.binding.state import BINDING
from campus.web.handlers.auth import SessionHandler
from campus.web.handlers.base import ApiError


class SessionsApiHandler(SessionHandler):
    """What the three endpoints share: the signed-in user, the store's listing, handles."""

    def signed_in_user(self) -> str:
        """The signed-in user's key: the store's index of sessions is by it."""
        user = self.current_user
        if not isinstance(user, User):
            raise ApiError(401, "Not logged in")
        return user.key

    @property
    def listing(self) -> UserSessions:
        store = self.services.sessions.store
        # Not isinstance(): a proxy around the store (metrics) provides methods dynamically.
        if not callable(getattr(store, "sessions_of", None)):
            raise RuntimeError(f"the {store.name} store cannot list a user's sessions")
        return cast(UserSessions, store)

    @property
    def handles(self) -> SessionHandles:
        return SessionHandles(self.services.config.session.secret[0])

    async def live_sessions(self, user: str) -> list[LiveSession]:
        return await self.listing.sessions_of(user)

    async def end(self, user: str, refs: list[str]) -> int:
        """End these sessions of the user (never the current one: that is a logout)."""
        ended = await self.listing.end_sessions(user, refs) if refs else 0
        count_sessions_destroyed(self.settings, "user", ended)
        return ended

    def current_ref(self) -> str:
        return session_ref(self.session.id)


class SessionsHandler(SessionsApiHandler):
    async def get(self) -> None:
        user = self.signed_in_user()
        current, handles, now = self.current_ref(), self.handles, self.session_manager.clock()
        idle = self.services.config.session.idle_timeout
        absolute = self.services.config.session.absolute_timeout
        listed = [
            describe(
                live, handles, current=live.ref == current, now=now, idle=idle, absolute=absolute
            )
            for live in await self.live_sessions(user)
        ]
        listed.sort(key=lambda entry: -entry["created"])
        self.write({"sessions": listed})

    head = get


class SessionHandleHandler(SessionsApiHandler):
    async def delete(self, handle: str) -> None:
        user = self.signed_in_user()
        handles = self.handles
        found = [s.ref for s in await self.live_sessions(user) if handles.matches(handle, s.ref)]
        if not found:
            raise ApiError(404, "No such session")
        if found[0] == self.current_ref():
            await self.log_out()  # ending the current session is a logout
        else:
            await self.end(user, found)
        self.write({})


class EndOthersHandler(SessionsApiHandler):
    async def post(self) -> None:
        user = self.signed_in_user()
        current, ended = self.current_ref(), 0
        while True:  # a listing is capped (MAX_LISTED): end a page at a time
            others = [s.ref for s in await self.live_sessions(user) if s.ref != current]
            count = await self.end(user, others) if others else 0
            if count == 0:
                break
            ended += count
        self.write({"ended": ended})


def describe(
    live: LiveSession,
    handles: SessionHandles,
    *,
    current: bool,
    now: float,
    idle: int,
    absolute: int,
) -> dict[str, Any]:
    """One session as the API shows it (times in epoch seconds)."""
    sign_in = _sign_in(live)
    created = sign_in.get("at")
    if not isinstance(created, int):  # a session from before sign-ins were recorded
        created = live.record.expires - absolute
    # The store pushes the idle deadline to "now + idle" on every request, so it was last
    # pushed at deadline - idle (near the absolute end the deadline is capped: a lower bound).
    last_active = max(created, min(int(now), int(live.idle_deadline - idle)))
    return {
        "handle": handles.handle(live.ref),
        "current": current,
        "created": created,
        "last_active": int(now) if current else last_active,
        "expires": int(live.idle_deadline),
        "address": _text(sign_in.get("address")),
        "agent": _text(sign_in.get("agent")) or "Unknown browser",
        "bound": BINDING in live.record.data,  # device-bound (DBSC): its key signs refreshes
    }


def _sign_in(live: LiveSession) -> dict[str, Any]:
    try:
        value = json.loads(live.record.data.get(SIGN_IN, "null"))
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""

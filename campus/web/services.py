"""The long-lived objects handlers use, built once at startup and passed to make_app.

Building them does no network I/O: the Redis store connects on first use.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, cast

from campus.accounts.signin import SIGN_IN
from campus.accounts.users import (
    UserDirectory,
    UsersFileFollower,
    normalize_email,
    password_hasher,
)
from campus.config import Config
from campus.observability.metrics import Metrics, timed_store
from campus.session import CookiePolicy, SessionManager
from campus.session.store import Clock, SessionStore, StoreUnavailable, UserSessions
from campus.session.stores.memory import MemoryStore
from campus.session.stores.redis import RedisStore
from campus.web.express import ExpressSessions

log = logging.getLogger("campus")


@dataclass(frozen=True, slots=True)
class Services:
    config: Config
    sessions: SessionManager
    users: UserDirectory
    express: ExpressSessions | None = None  # the Express cut-over; None while it is off
    metrics: Metrics | None = None  # GET /metrics and what feeds it; None when [metrics] is off


def build_store(config: Config, *, clock: Clock = time.time) -> MemoryStore | RedisStore:
    """The configured store. No I/O: Redis connects on first use."""
    if config.session.store == "redis":
        redis = config.redis
        return RedisStore.from_url(
            redis.url, prefix=redis.prefix, timeout=redis.timeout, clock=clock
        )
    return MemoryStore(max_sessions=config.session.max_sessions, clock=clock)


#: The session key that holds its user: the user's key (the normalised email). Never a copy
#: of the record: the users file is read for it on every request, so a change shows at once.
USER = "user"


def session_user(data: Mapping[str, Any]) -> str | None:
    """Whose session this is: the key stored at login (also for "log out everywhere").

    A session made by campus 0.2 holds a copy of the whole record instead: its email is
    the key, and nothing else of that copy is ever read.
    """
    user = data.get(USER)
    if isinstance(user, str):
        return user
    email = user.get("email") if isinstance(user, dict) else None
    return normalize_email(email) if isinstance(email, str) else None


def build_sessions(
    config: Config, store: SessionStore, *, clock: Clock = time.time
) -> SessionManager:
    session = config.session
    cookie = CookiePolicy(
        name=session.cookie_name,
        domain=session.domain,
        same_site=session.same_site,
        secure=None if session.secure == "auto" else session.secure,
    )
    return SessionManager(
        store,
        secrets=session.secret,
        idle_timeout=session.idle_timeout,
        absolute_timeout=session.absolute_timeout,
        rolling=session.rolling,
        save_uninitialized=session.save_uninitialized,
        cookie=cookie,
        user_of=session_user,
        clock=clock,
    )


def build_express(
    config: Config, store: SessionStore, *, clock: Clock = time.time
) -> ExpressSessions | None:
    """The Express cut-over, on while [express] secrets is set; it shares the store's Redis."""
    express = config.express
    if not express.secrets:
        return None
    if not isinstance(store, RedisStore):  # config.load refuses this combination already
        raise ValueError("the Express cut-over needs the Redis store")
    return ExpressSessions(
        store.client,
        secrets=express.secrets,
        prefix=express.prefix,
        cookie_name=express.cookie_name,
        clock=clock,
    )


#: The nice value of the Argon2 threads: the event loop wins the CPU whenever it wants it.
HASHING_NICENESS = 19


def _yield_to_the_event_loop() -> None:
    """Lower this thread's CPU priority (Linux schedules threads, so nice is per thread).

    Each hash is ~100 ms of CPU; at equal priority a burst of logins shares the core with the
    event loop and every reader waits. Niced, logins take the CPU the readers leave over.
    """
    with contextlib.suppress(OSError, AttributeError):  # not Linux, or not allowed: no harm
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HASHING_NICENESS)


def signed_in_at(data: Mapping[str, Any]) -> float:
    """When the session signed in (epoch seconds; 0 when it does not say)."""
    facts = data.get(SIGN_IN)
    at = facts.get("at") if isinstance(facts, dict) else None
    return float(at) if isinstance(at, int | float) else 0.0


def shipped_users_file(config: Config) -> str:
    """The development users file under the root: whatever shares its hashes is the demo."""
    return os.path.join(config.server.root, "config", "users.dev.json")


def follow_users_file(services: Services) -> UsersFileFollower:
    """The users file followed in this process: users it no longer holds lose their sessions.

    Every process ends them (each may be the only one whose file changed); a store that does
    not answer, or keeps no index of a user's sessions, leaves each to end at its next
    request, when the user is not found.
    """
    store = services.sessions.store
    # Not isinstance(): a proxy around the store (metrics) provides methods dynamically.
    index = cast(UserSessions, store) if callable(getattr(store, "delete_user", None)) else None

    async def end_sessions(keys: set[str]) -> None:
        if index is None:
            return
        ended = 0
        try:
            for key in sorted(keys):
                ended += await index.delete_user(key)
        except StoreUnavailable as exc:
            log.warning(
                "the sessions of %d removed user(s) could not be ended now (%s): each ends at"
                " its next request",
                len(keys),
                exc,
            )
        if services.metrics is not None:
            services.metrics.session_destroyed("removed", ended)
        if ended:
            log.info("ended %d session(s) of %d removed user(s)", ended, len(keys))

    return UsersFileFollower(services.users, on_removed=end_sessions)


def build_services(config: Config, *, clock: Clock = time.time) -> Services:
    """Everything handlers need. Raises UsersError for a users file this process refuses."""
    # Argon2 releases the GIL: one thread per core keeps logins off the event loop.
    workers = os.cpu_count() or 2
    executor = ThreadPoolExecutor(
        max_workers=workers,
        thread_name_prefix="argon2",
        initializer=_yield_to_the_event_loop,
    )
    users = UserDirectory.load(
        config.users.file,
        executor=executor,
        workers=workers,
        hasher=password_hasher(config.users.argon2),
        # Production: no file is a mistake, and so is the published demo account, at
        # startup and in any version of the file loaded later.
        required=config.production,
        refuse_demo_of=shipped_users_file(config) if config.production else None,
    )
    store = build_store(config, clock=clock)
    metrics = Metrics() if config.metrics.enabled else None
    return Services(
        config=config,
        sessions=build_sessions(config, timed_store(store, metrics), clock=clock),
        users=users,
        express=build_express(config, store, clock=clock),
        metrics=metrics,
    )

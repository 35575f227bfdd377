"""The long-lived objects handlers use, built once at startup and passed to make_app.

Building them does no network I/O: the Redis store connects on first use.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from campus.accounts.users import UserDirectory, normalize_email, password_hasher
from campus.config import Config
from campus.observability.metrics import Metrics, timed_store
from campus.session import CookiePolicy, SessionManager
from campus.session.store import Clock, SessionStore
from campus.session.stores.memory import MemoryStore
from campus.session.stores.redis import RedisStore
from campus.web.express import ExpressSessions


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


def session_user(data: Mapping[str, Any]) -> str | None:
    """Whose session this is, for "log out everywhere": the logged-in user's email."""
    user = data.get("user")
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


def build_services(config: Config, *, clock: Clock = time.time) -> Services:
    """Everything handlers need. Raises UsersError for a broken users file."""
    # Argon2 releases the GIL: one thread per core keeps logins off the event loop.
    executor = ThreadPoolExecutor(
        max_workers=os.cpu_count() or 2,
        thread_name_prefix="argon2",
        initializer=_yield_to_the_event_loop,
    )
    users = UserDirectory.load(
        config.users.file, executor=executor, hasher=password_hasher(config.users.argon2)
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

"""campus in-process for a test: its configuration, stores and services, and the requests
and answers the HTTP tests share (tests/conftest.py turns them into fixtures).

The users files the suite writes hash with :data:`CHEAP_HASHER`; their password is
:data:`PASSWORD`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import argon2
from tornado.httpclient import HTTPResponse
from tornado.ioloop import IOLoop

from campus.accounts.users import UserDirectory
from campus.config import Argon2Params, Config, RedisConfig, SessionConfig, UsersConfig
from campus.session.store import SessionRecord, SessionStore, StoreUnavailable, UserSessions
from campus.web.services import Services, build_sessions, build_store

CHEAP_HASHER = argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
PASSWORD = "correct horse battery staple"
USERS = [
    {"email": "ann@campus.test", "name": "Ann", "roles": ["student"]},
    {"email": "bob@campus.test", "name": "Bob", "roles": ["staff"]},
]
ANN = "ann@campus.test"


def make_config(
    users_file: Path, store: str = "memory", redis_url: str = "", **session: Any
) -> Config:
    cheap = Argon2Params(memory_kib=8, time_cost=1, parallelism=1)  # CHEAP_HASHER's
    config = Config(users=UsersConfig(file=str(users_file), argon2=cheap))
    redis_config = RedisConfig(url=redis_url) if redis_url else config.redis
    return dataclasses.replace(
        config,
        session=dataclasses.replace(SessionConfig(), store=store, **session),  # type: ignore[arg-type]
        redis=redis_config,
    )


def make_store(config: Config, clock: Callable[[], float]) -> SessionStore:
    return build_store(config, clock=clock)


def user_index(store: SessionStore) -> UserSessions:
    """The store's per-user index (count, log out everywhere): both campus stores have one."""
    assert isinstance(store, UserSessions), f"the {store.name} store has no per-user index"
    return store


def make_services(config: Config, clock: Callable[[], float]) -> Services:
    store = make_store(config, clock)
    sessions = build_sessions(config, store, clock=clock)
    return Services(config=config, sessions=sessions, users=UserDirectory.load(config.users.file))


def closing_store(services: Services, io_loop: IOLoop) -> Iterator[Services]:
    """A fixture's body: yield *services*, then close their store in the test's event loop."""
    store = services.sessions.store
    yield services
    io_loop.run_sync(store.close)


#: The ``fetch`` fixture: ``await fetch(path, **options)`` of tornado's fetch.
Fetch = Callable[..., Awaitable[HTTPResponse]]


def session_cookie(response: Any, name: str = "campus.sid") -> str | None:
    """The value a response sets for the session cookie ('' when it clears it), or None."""
    header: str
    for header in response.headers.get_list("Set-Cookie"):
        cookie_name, _, rest = header.partition("=")
        if cookie_name == name:
            return rest.split(";", 1)[0].strip('"')
    return None


def error_of(response: HTTPResponse, status: int) -> str:
    """Assert a JSON error answer with this status; return its errorMessage."""
    assert response.code == status, (response.code, response.body[:300])
    content_type = response.headers.get("Content-Type", "")
    assert content_type.startswith("application/json"), content_type
    assert b"Traceback" not in response.body
    assert b"<html" not in response.body.lower()
    body = json.loads(response.body)
    assert isinstance(body, dict)
    assert set(body) == {"errorMessage"}, body
    message = body["errorMessage"]
    assert isinstance(message, str)
    assert message
    return message


def json_of(response: HTTPResponse, status: int = 200) -> Any:
    assert response.code == status, (response.code, response.body[:300])
    assert response.headers.get("Content-Type", "").startswith("application/json")
    return json.loads(response.body)


def login_body(email: str = ANN, password: str = PASSWORD) -> str:
    return json.dumps({"email": email, "password": password})


async def post_login(fetch: Fetch, body: str | bytes, cookie: str | None = None) -> HTTPResponse:
    headers = {"Content-Type": "application/json"}
    if cookie is not None:
        headers["Cookie"] = f"campus.sid={cookie}"
    return await fetch("/login", method="POST", body=body, headers=headers)


async def me(fetch: Fetch, cookie: str) -> HTTPResponse:
    return await fetch("/api/me", headers={"Cookie": f"campus.sid={cookie}"})


async def logged_in(fetch: Fetch) -> str:
    response = await post_login(fetch, login_body())
    assert response.code == 200, response.body
    cookie = session_cookie(response)
    assert cookie
    return cookie


class DownStore:
    """A store whose every call fails the way an unreachable one does (an outage)."""

    name = "down"

    async def load(self, sid: str, *, touch: int | None) -> SessionRecord | None:
        raise StoreUnavailable("down")

    async def create(
        self, sid: str, record: SessionRecord, *, ttl: int, replaces: str | None = None
    ) -> None:
        raise StoreUnavailable("down")

    async def update(self, sid: str, changed: Any, deleted: Any, *, ttl: int, user: Any) -> bool:
        raise StoreUnavailable("down")

    async def delete(self, sid: str) -> None:
        raise StoreUnavailable("down")

    async def delete_user(self, user: str) -> int:
        raise StoreUnavailable("down")

    async def count(self) -> int:
        raise StoreUnavailable("down")

    async def ping(self) -> None:
        raise StoreUnavailable("down")

    async def close(self) -> None:
        raise StoreUnavailable("down")

    async def reserve(self, keys: Any, attempt: str, *, window: int, limit: int) -> float:
        raise StoreUnavailable("down")

    async def give_back(self, attempt: str, keys: Any, *, forget: Any = ()) -> None:
        raise StoreUnavailable("down")

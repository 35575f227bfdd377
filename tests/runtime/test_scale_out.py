"""Several campus processes sharing one Redis behave as one server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.support.apps import PASSWORD
from tests.support.servers import Campus, RedisServer, production_env


@pytest.fixture
def two_servers(
    users_file: Path, redis_server: RedisServer, redis_db: redis.Redis
) -> Iterator[tuple[Campus, Campus]]:
    env = production_env(redis_server.url, users_file)
    first = Campus(env)
    try:
        second = Campus(env)
    except BaseException:
        first.stop()
        raise
    yield first, second
    first.stop()
    second.stop()


def test_login_on_one_use_and_logout_on_the_other(two_servers: tuple[Campus, Campus]) -> None:
    one, other = two_servers
    status, _, body = one.request("/login", {"email": "ann@campus.test", "password": PASSWORD})
    assert status == 200
    cookie = one.cookie

    other.cookie = cookie  # the browser's next request lands on the other process
    assert other.request("/api/me")[::2] == (200, body)
    assert one.request("/api/me")[::2] == (200, body)

    assert other.request("/logout")[::2] == (200, {})
    assert other.cookie == ""  # expired by a process that did not issue it
    one.cookie = cookie  # a copy of the cookie, replayed on the process that issued it
    assert one.request("/api/me")[::2] == (401, {"errorMessage": "Not logged in"})

"""Shared fixtures: our own redis-server (tests/support/servers.py), a controllable clock,
apps to test (built by tests/support/apps.py).

Nothing here touches the Redis that may already listen on 6379: the suite starts its own
``redis-server`` (from PATH) and flushes only that one.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import redis
import tornado.web
from tornado.httpclient import AsyncHTTPClient, HTTPResponse
from tornado.ioloop import IOLoop

from campus.config import Config
from campus.web.app import make_app
from campus.web.services import Services
from tests.support import processes
from tests.support.apps import (
    CHEAP_HASHER,
    PASSWORD,
    USERS,
    Fetch,
    closing_store,
    make_config,
    make_services,
)
from tests.support.needs import markers_of
from tests.support.servers import REPO, RedisServer

if TYPE_CHECKING:
    from campus.session.contract import ContractClock

# The store contract suite lives in the package (others run it against their own stores):
# rewrite its asserts as pytest does a test module's, for readable failures.
pytest.register_assert_rewrite("campus.session.contract")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Each test is marked with what it needs (browser, nginx, ..., slow), from the file that
    holds it and its fixtures (tests/support/needs.py): ``-m "not browser"`` leaves those out."""
    for item in items:
        for marker in markers_of(item.path, getattr(item, "fixturenames", ())):
            item.add_marker(marker)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    processes.running = item  # before its fixtures: they may start processes too


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def black_hole() -> Iterator[int]:
    """A port that accepts TCP connections (the kernel's backlog) but never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        port: int = sock.getsockname()[1]
        yield port


@pytest.fixture
def redis_db(redis_server: RedisServer) -> redis.Redis:
    """A synchronous client of our own redis-server, emptied for this test."""
    client = redis_server.client()
    client.flushall()
    return client


@pytest.fixture
def clock() -> ContractClock:
    """The store contract's clock: real time plus an offset the test pushes forward."""
    from campus.session.contract import ContractClock  # once its asserts are rewritten

    return ContractClock()


@pytest.fixture(scope="session")
def users_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A users file whose hashes are cheap to verify (the real cost is for production)."""
    path = tmp_path_factory.mktemp("users") / "users.json"
    records = [{**user, "password_hash": CHEAP_HASHER.hash(PASSWORD)} for user in USERS]
    path.write_text(json.dumps(records))
    return path


@pytest.fixture(params=["memory", "redis"])
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def config(request: pytest.FixtureRequest, users_file: Path) -> Config:
    """Memory store by default; tests that take ``store_kind`` run against both stores.

    ``@pytest.mark.session_config(key=value, ...)`` overrides [session] settings for a test.
    """
    marker = request.node.get_closest_marker("session_config")
    overrides = marker.kwargs if marker else {}
    kind = (
        request.getfixturevalue("store_kind") if "store_kind" in request.fixturenames else "memory"
    )
    if kind == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        request.getfixturevalue("redis_db")
        return make_config(users_file, "redis", server.url, **overrides)
    return make_config(users_file, **overrides)


@pytest.fixture
def services(config: Config, clock: ContractClock, io_loop: IOLoop) -> Iterator[Services]:
    """The app's services; their store is closed after the test, in the test's event loop.

    A Redis store's read connection is a task of that loop: left open, it is destroyed pending.
    """
    yield from closing_store(make_services(config, clock), io_loop)


@pytest.fixture
def app(services: Services) -> tornado.web.Application:
    return make_app(services, root=str(REPO))


@pytest.fixture
def fetch(http_client: AsyncHTTPClient, base_url: str) -> Fetch:
    """Requests to the test's server by path: an error status is a response, not an exception,
    and a redirect is the response itself (``follow_redirects=True`` to follow it)."""

    async def do(path: str, **options: Any) -> HTTPResponse:
        options.setdefault("raise_error", False)
        options.setdefault("follow_redirects", False)
        return await http_client.fetch(base_url + path, **options)

    return do


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real three-master Redis Cluster of the suite's own (tests/support/redis_topologies.py)."""
    from tests.support.redis_topologies import Cluster

    cluster = Cluster(tmp_path_factory.mktemp("cluster"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def redis_sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real Sentinel group (master, replica, Sentinel) of the suite's own."""
    from tests.support.redis_topologies import SentinelGroup

    group = SentinelGroup(tmp_path_factory.mktemp("sentinel"))
    try:
        group.start()
        yield group
    finally:
        group.stop()

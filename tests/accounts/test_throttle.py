"""Login throttling through the HTTP API, on both stores: 429 + Retry-After, per email and per
client address, a sliding window, a success resetting only the email's counter.

The client address comes from X-Forwarded-For only with trust_proxy on; tests that need
many addresses turn it on and name one per request.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import redis
from tornado.httpclient import AsyncHTTPClient, HTTPResponse
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port

from campus.config import Config, LoginConfig
from campus.session.contract import ContractClock
from campus.web.app import make_app
from tests.support.apps import PASSWORD, Fetch, make_config, make_services, session_cookie
from tests.support.servers import REPO, RedisServer, redis_keys

pytestmark = pytest.mark.gen_test

ANN, BOB = "ann@campus.test", "bob@campus.test"
LIMIT, WINDOW = 3, 900


def with_login(config: Config, *, trust_proxy: bool) -> Config:
    return dataclasses.replace(
        config,
        server=dataclasses.replace(config.server, trust_proxy=trust_proxy),
        login=LoginConfig(max_failures=LIMIT, window=WINDOW),
    )


@pytest.fixture(autouse=True)
def both_stores(store_kind: str) -> None:
    """Every test here runs on the memory store and on Redis."""


@pytest.fixture
def config(config: Config) -> Config:
    """A limit of 3, and trust_proxy on."""
    return with_login(config, trust_proxy=True)


async def login(
    fetch: Fetch, email: str = ANN, password: str = PASSWORD, address: str | None = None
) -> HTTPResponse:
    headers = {"Content-Type": "application/json"}
    if address is not None:
        headers["X-Forwarded-For"] = address
    body = json.dumps({"email": email, "password": password})
    return await fetch("/login", method="POST", body=body, headers=headers)


def throttled(response: HTTPResponse) -> int:
    """Assert the throttled answer (429, its message, Retry-After); return its Retry-After."""
    assert response.code == 429, (response.code, response.body)
    assert json.loads(response.body) == {"errorMessage": "Too many failed logins. Try again later."}
    assert response.headers["Cache-Control"] == "no-store"
    assert session_cookie(response) is None
    return int(response.headers["Retry-After"])


async def fail(fetch: Fetch, email: str, times: int, address: str | None = None) -> None:
    for i in range(times):
        where = address if address is not None else f"10.0.0.{i}"
        response = await login(fetch, email, "wrong", where)
        assert response.code == 403, (i, response.code)


async def test_too_many_failures_for_one_email_is_429_even_with_the_right_password(
    fetch: Fetch,
) -> None:
    await fail(fetch, ANN, LIMIT)  # from three addresses: only the email counts up to 3
    retry = throttled(await login(fetch, ANN, PASSWORD, "10.9.9.9"))
    assert WINDOW - 5 <= retry <= WINDOW
    retry_wrong = throttled(await login(fetch, ANN, "wrong", "10.9.9.8"))
    assert abs(retry - retry_wrong) <= 1  # nothing tells the right password from a wrong one
    assert throttled(await login(fetch, " Ann@CAMPUS.test ", PASSWORD, "10.9.9.7"))  # normalized
    assert (await login(fetch, BOB, PASSWORD, "10.9.9.9")).code == 200  # Bob is not Ann


async def test_unknown_emails_count_too(fetch: Fetch) -> None:
    await fail(fetch, "nobody@campus.test", LIMIT)
    throttled(await login(fetch, "NOBODY@campus.test", PASSWORD, "10.9.9.9"))


async def test_too_many_failures_from_one_address_is_429(fetch: Fetch) -> None:
    for i in range(LIMIT):  # a different email each time: only the address counts up
        response = await login(fetch, f"guess{i}@campus.test", "x", "192.0.2.1")
        assert response.code == 403
    throttled(await login(fetch, ANN, PASSWORD, "192.0.2.1"))
    # the proxy appends the real client last; whatever the client wrote before it is ignored
    throttled(await login(fetch, ANN, PASSWORD, "203.0.113.5, 192.0.2.1"))
    assert (await login(fetch, ANN, PASSWORD, "192.0.2.1, 192.0.2.2")).code == 200


async def test_an_ipv6_client_is_counted_by_its_64(fetch: Fetch) -> None:
    """Rotating addresses inside one /64 (one subscriber's network) gains nothing."""
    codes = [
        (await login(fetch, f"guess{i}@campus.test", "x", f"2001:db8:7:7::{i:x}")).code
        for i in range(LIMIT + 3)
    ]
    assert codes == [403] * LIMIT + [429] * 3
    assert (await login(fetch, ANN, PASSWORD, "2001:db8:7:8::1")).code == 200  # the next /64


async def test_the_window_slides(fetch: Fetch, clock: ContractClock) -> None:
    await fail(fetch, ANN, 1)
    clock.advance(100)
    await fail(fetch, ANN, LIMIT - 1)
    retry = throttled(await login(fetch, ANN, PASSWORD, "10.9.9.9"))
    assert WINDOW - 100 - 5 <= retry <= WINDOW - 100  # until the first failure ages out
    clock.advance(retry)
    response = await login(fetch, ANN, PASSWORD, "10.9.9.9")
    assert response.code == 200  # one slot free again (and the success resets the email)
    await fail(fetch, ANN, LIMIT - 1)
    assert (await login(fetch, ANN, PASSWORD, "10.9.9.9")).code == 200


async def test_a_success_resets_the_email_but_not_the_address(fetch: Fetch) -> None:
    address = "198.51.100.7"
    await fail(fetch, ANN, LIMIT - 1, address)
    assert (await login(fetch, ANN, PASSWORD, address)).code == 200
    # Ann's count starts over (from other addresses: this one has LIMIT - 1 failures) ...
    await fail(fetch, ANN, LIMIT - 1)
    assert (await login(fetch, ANN, PASSWORD, "10.9.9.9")).code == 200
    # ... but the address keeps its failures: one valid account must not wipe them
    assert (await login(fetch, BOB, "wrong", address)).code == 403
    throttled(await login(fetch, BOB, PASSWORD, address))


async def test_a_throttled_right_password_does_not_reset(
    fetch: Fetch, clock: ContractClock
) -> None:
    await fail(fetch, ANN, LIMIT)
    for _ in range(3):
        throttled(await login(fetch, ANN, PASSWORD, "10.9.9.9"))
    clock.advance(WINDOW + 1)
    assert (await login(fetch, ANN, PASSWORD, "10.9.9.9")).code == 200


async def test_bad_bodies_are_not_failures(fetch: Fetch) -> None:
    for _ in range(LIMIT + 2):
        response = await fetch(
            "/login", method="POST", body=b'{"email": 1}', headers={"X-Forwarded-For": "10.1.1.1"}
        )
        assert response.code == 400
    assert (await login(fetch, ANN, PASSWORD, "10.1.1.1")).code == 200


class TestUntrustedProxy:
    @pytest.fixture
    def config(self, config: Config) -> Config:
        return with_login(config, trust_proxy=False)

    async def test_forwarded_for_cannot_dodge_the_address_limit(self, fetch: Fetch) -> None:
        for i in range(LIMIT):
            response = await login(fetch, f"guess{i}@campus.test", "x", f"10.0.0.{i}")
            assert response.code == 403
        throttled(await login(fetch, BOB, PASSWORD, "10.0.0.200"))  # all of it was 127.0.0.1


class TestRedisAcrossProcesses:
    @pytest.fixture(autouse=True)
    def both_stores(self) -> None:
        """Redis only: the memory store belongs to one process."""

    @pytest.fixture
    def config(self, users_file: Path, redis_server: RedisServer, redis_db: redis.Redis) -> Config:
        return with_login(make_config(users_file, "redis", redis_server.url), trust_proxy=True)

    async def test_counters_are_shared_by_apps_sharing_redis(
        self, config: Config, clock: ContractClock, fetch: Fetch, redis_db: redis.Redis
    ) -> None:
        """A second app on the same Redis (another process or machine) sees the same counters."""
        await fail(fetch, ANN, LIMIT)
        other = make_services(config, clock)
        sock, port = bind_unused_port()
        server = HTTPServer(make_app(other, root=str(REPO)))
        server.add_sockets([sock])
        try:
            response = await AsyncHTTPClient().fetch(
                f"http://127.0.0.1:{port}/login",
                method="POST",
                body=json.dumps({"email": ANN, "password": PASSWORD}),
                headers={"X-Forwarded-For": "10.9.9.9"},
                raise_error=False,
            )
            throttled(response)
        finally:
            server.stop()
            await other.sessions.store.close()
        keys = [k.decode() for k in redis_keys(redis_db)]
        assert len(keys) == LIMIT + 1  # Ann's counter and one per address
        assert all(k.startswith("campus:login:") for k in keys)

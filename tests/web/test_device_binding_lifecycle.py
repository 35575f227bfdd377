"""Device-bound sessions over their life: the modes, how they end, other stores, outages,
concurrent requests, the Express cut-over. The DBSC client and fixtures are those of
tests/support/dbsc_app.py.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import hmac
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

from campus.config import Config
from campus.observability.metrics import Metrics
from campus.session.contract import ContractClock
from campus.session.stores.redis import RedisStore
from campus.web.binding import policy
from campus.web.express import ExpressSessions
from campus.web.services import Services
from tests.support.apps import PASSWORD, DownStore, make_config, make_services, user_index
from tests.support.dbsc import registrations
from tests.support.dbsc_app import (
    ANN,
    REFRESH,
    REGISTER,
    Make,
    bound,
    counter,
    error,
    make,
    metered_services,
    signed_in,
    stored_data,
)

pytestmark = pytest.mark.gen_test
__all__ = ["make", "metered_services"]  # the shared fixtures, used by name


@pytest.fixture(autouse=True)
def both_stores(store_kind: str) -> None:
    """Every test here runs on the memory store and on Redis (but TestTopologies')."""


# -- modes, endings ----------------------------------------------------------------------------


@pytest.mark.session_config(device_binding="required")
async def test_required_ends_a_session_that_did_not_bind_in_time(
    make: Make, clock: ContractClock, services: Services
) -> None:
    lazy = await signed_in(make)  # a browser without DBSC
    assert (await lazy.fetch("/api/me")).code == 200  # within the registration window
    careful = await bound(make)
    clock.advance(policy.REGISTRATION_WINDOW + 1)
    before = dict(lazy.cookies)
    response = await lazy.fetch("/api/me")
    assert response.code == 401 and error(response) == policy.NOT_BOUND
    assert "campus.sid" not in lazy.cookies  # the session is over, its cookie expired
    lazy.cookies = before
    assert await stored_data(services, lazy) is None  # and its record is gone
    assert (await careful.fetch("/api/me")).code == 200
    late = await signed_in(make)
    clock.advance(policy.REGISTRATION_WINDOW + 1)
    assert (await late.register()).code == 400  # its challenge is stale by now
    assert counter(services, "campus_device_binding_refused_total", cause="unbound") == 1


@pytest.mark.session_config(device_binding="off")
async def test_off_offers_nothing_and_has_no_endpoints(make: Make) -> None:
    client = await signed_in(make)
    assert client.offered is None
    for path in (REGISTER, REFRESH):
        response = await client.fetch(path, "POST")
        assert response.code == 404 and error(response) == "Not found"
    assert (await client.fetch("/api/me")).code == 200


async def test_logout_ending_and_revocation_end_the_binding(make: Make, services: Services) -> None:
    client = await bound(make)
    kept = dict(client.cookies)
    assert (await client.fetch("/logout", "POST")).code == 200
    response = await client.fetch(
        REFRESH, "POST", headers={"Sec-Secure-Session-Id": client.session_id or ""}, cookies=kept
    )
    assert response.code == 401

    here, there = await bound(make), await bound(make)
    listed = json.loads((await here.fetch("/api/sessions")).body)["sessions"]
    (other,) = [s for s in listed if not s["current"]]
    assert other["bound"] is True
    assert (await here.fetch(f"/api/sessions/{other['handle']}", "DELETE")).code == 200
    assert (await there.refresh()).code == 401
    assert (await there.fetch("/api/me")).code == 401

    assert await user_index(services.sessions.store).delete_user(ANN) >= 1  # `sessions revoke`
    assert (await here.refresh()).code == 401


async def test_a_new_login_starts_unbound(make: Make, services: Services) -> None:
    client = await bound(make)
    assert (await client.login(ANN, PASSWORD)).code == 200  # same browser, signs in again
    data = await stored_data(services, client)
    assert data is not None and "device_binding" not in data
    assert (await client.fetch("/api/me")).code == 200  # the old bound cookie is not needed


# -- other stores, outages, concurrency -------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("topology", ["redis_cluster", "redis_sentinel"])
class TestTopologies:
    @pytest.fixture(autouse=True)
    def both_stores(self) -> None:
        """A Cluster and a Sentinel group instead."""

    @pytest.fixture
    def services(
        self, request: pytest.FixtureRequest, topology: str, users_file: Any, clock: ContractClock
    ) -> Iterator[Services]:
        group = request.getfixturevalue(topology)
        group.flush()
        config = make_config(users_file, "redis", group.url)
        yield dataclasses.replace(make_services(config, clock), metrics=Metrics())
        # closed on the test's loop by the test itself

    async def test_binding_lives_in_the_record_there_too(
        self, make: Make, services: Services
    ) -> None:
        try:
            client = await bound(make, "RS256")
            stolen = {"campus.sid": client.cookies["campus.sid"]}
            assert (await client.fetch("/api/me", cookies=stolen)).code == 401
            del client.cookies["campus.sid.bound"]
            assert await client.refresh_until_done() == [200]
            assert (await client.fetch("/api/me")).code == 200
            assert (await client.fetch("/logout", "POST")).code == 200
            client.cookies.update(stolen)
            assert (await client.refresh()).code == 401
        finally:
            await services.sessions.store.close()


async def test_a_store_outage_during_refresh_is_503_not_500(make: Make, services: Services) -> None:
    client = await bound(make)
    await services.sessions.store.close()
    store = services.sessions.store
    down = DownStore()
    services.sessions.store = down
    try:
        response = await client.refresh()
        assert response.code == 503 and "Retry-After" in response.headers
        assert error(response) == "Session store unavailable"
        assert (await client.register()).code == 503
    finally:
        services.sessions.store = store


async def test_concurrent_refreshes_each_get_a_cookie_and_none_undoes_another(
    make: Make, services: Services
) -> None:
    """Two tabs, or a proactive refresh racing a deferred one: each with its own challenge."""
    client = await bound(make)
    first = client.cached_challenge
    assert first is not None
    other = await client.refresh(token=client.proof(first, registration=False))
    assert other.code == 200  # a second challenge for the next refresh is now in hand
    second = client.cached_challenge
    assert second is not None
    third_answer = await client.fetch(
        REFRESH, "POST", headers={"Sec-Secure-Session-Id": client.session_id or ""}
    )
    third = third_answer.headers["Secure-Session-Challenge"].split('"')[1]
    proofs = [client.proof(c, registration=False) for c in (second, third)]
    answers = await asyncio.gather(*(client.refresh(token=p) for p in proofs))
    assert [a.code for a in answers] == [200, 200]
    data = await stored_data(services, client)
    assert data is not None
    for used in (first, second, third):  # none came back
        assert f"device_challenge:{hashlib.sha256(used.encode()).hexdigest()}" not in data


class TestExpressCarryOver:
    @pytest.fixture
    def store_kind(self) -> str:
        """The cut-over reads connect-redis records: Redis only."""
        return "redis"

    @pytest.mark.session_config(device_binding="required")
    async def test_a_carried_over_session_is_offered_binding(
        self, make: Make, services: Services, config: Config
    ) -> None:
        """Carrying an Express session over is a login by other means: it may bind, and under
        ``required`` it gets the same registration window as a login."""
        secret = "the Express app's secret"
        express = dataclasses.replace(config.express, secrets=(secret,))
        store = services.sessions.store
        assert isinstance(store, RedisStore)
        carrying = ExpressSessions(store.client, secrets=express.secrets, prefix=express.prefix)
        object.__setattr__(services, "express", carrying)
        sid = "express-session-id"
        record = {"cookie": {"expires": None}, "user": {"email": ANN, "name": "Ann"}}
        await store.client.set(express.prefix + sid, json.dumps(record))
        mac = hmac.new(secret.encode(), sid.encode(), hashlib.sha256).digest()
        client = make()
        client.cookies["connect.sid"] = quote(
            "s:" + sid + "." + base64.b64encode(mac).decode().rstrip("=")
        )
        response = await client.fetch("/api/me")
        assert response.code == 200, response.body
        offered = registrations(response.headers.get("Secure-Session-Registration"))
        assert len(offered) == 1
        client.offered = offered[0]
        assert (await client.register()).code == 200
        assert (await client.fetch("/api/me")).code == 200


async def test_a_proof_sent_many_times_at_once_is_taken_once(make: Make) -> None:
    """Requests racing with one proof all load the session before any writes it back: the
    store's atomic claim lets exactly one through."""
    client = await bound(make)
    assert client.cached_challenge is not None
    proof = client.proof(client.cached_challenge, registration=False)
    answers = await asyncio.gather(*(client.refresh(token=proof) for _ in range(12)))
    assert sorted(a.code for a in answers) == [200] + [403] * 11

    fresh = await signed_in(make)
    assert fresh.offered is not None
    token = fresh.proof(fresh.offered.challenge, registration=True)
    answers = await asyncio.gather(*(fresh.register(token) for _ in range(8)))
    assert sorted(a.code for a in answers) == [200] + [400] * 7

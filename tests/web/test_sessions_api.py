"""'Your sessions' over HTTP: GET /api/sessions, DELETE /api/sessions/<handle>,
POST /api/sessions/end-others — on the memory store and Redis; the listing also on a real
Redis Cluster and Sentinel group.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
from typing import Any

import pytest
import redis
import tornado.web
from tornado.httpclient import AsyncHTTPClient, HTTPResponse

from campus.config import Config
from campus.session.contract import ContractClock
from campus.session.store import MAX_LISTED, SessionRecord, new_session_id, session_ref
from campus.session.stores.redis import RedisStore
from campus.web.app import make_app
from campus.web.handlers.auth import SessionHandler
from campus.web.services import Services
from tests.support.apps import PASSWORD, make_config, make_services, session_cookie
from tests.support.servers import REPO

pytestmark = pytest.mark.gen_test

FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0"
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)
ANN, BOB = "ann@campus.test", "bob@campus.test"


class SlowWrite(SessionHandler):
    """A request of a session that is still in flight when the session is ended."""

    def initialize(self, release: asyncio.Event, loaded: asyncio.Event) -> None:
        self.release, self.loaded = release, loaded

    async def get(self) -> None:
        self.loaded.set()
        await self.release.wait()
        self.session["late"] = "write"
        self.write({})


@pytest.fixture(autouse=True)
def both_stores(store_kind: str) -> None:
    """Every test here runs on the memory store and on Redis."""


@pytest.fixture
def release() -> asyncio.Event:
    return asyncio.Event()


@pytest.fixture
def loaded() -> asyncio.Event:
    return asyncio.Event()


@pytest.fixture
def app(
    services: Services, release: asyncio.Event, loaded: asyncio.Event
) -> tornado.web.Application:
    application = make_app(services, root=str(REPO))
    options = {"release": release, "loaded": loaded}
    application.add_handlers(r".*$", [(r"/test/slow", SlowWrite, options)])
    return application


class Browser:
    """One browser: its own cookie and User-Agent."""

    def __init__(self, client: AsyncHTTPClient, base_url: str, agent: str = FIREFOX) -> None:
        self.client, self.base_url, self.agent, self.cookie = client, base_url, agent, ""

    async def fetch(self, path: str, method: str = "GET", body: Any = None) -> HTTPResponse:
        headers = {"User-Agent": self.agent}
        if self.cookie:
            headers["Cookie"] = f"campus.sid={self.cookie}"
        response = await self.client.fetch(
            self.base_url + path,
            method=method,
            headers=headers,
            body=None if body is None else json.dumps(body),
            raise_error=False,
            request_timeout=20,
        )
        value = session_cookie(response)
        if value is not None:
            self.cookie = value
        return response

    async def login(self, email: str = ANN) -> None:
        response = await self.fetch("/login", "POST", {"email": email, "password": PASSWORD})
        assert response.code == 200, response.body

    async def sessions(self) -> list[dict[str, Any]]:
        response = await self.fetch("/api/sessions")
        assert response.code == 200, response.body
        assert response.headers["Cache-Control"] == "no-store"
        listed: list[dict[str, Any]] = json.loads(response.body)["sessions"]
        return listed

    async def me(self) -> int:
        return (await self.fetch("/api/me")).code


@pytest.fixture
def browsers(http_client: AsyncHTTPClient, base_url: str) -> Any:
    def make(agent: str = FIREFOX) -> Browser:
        return Browser(http_client, base_url, agent)

    return make


async def test_the_listing_shows_every_session_newest_first(
    browsers: Any, clock: ContractClock, config: Config
) -> None:
    laptop, phone, bob = browsers(FIREFOX), browsers(IPHONE), browsers()
    await laptop.login()
    clock.advance(60)  # the server's clock: sign-in times and the store's expiry alike
    await phone.login()
    await bob.login(BOB)
    before = clock()
    listed = await laptop.sessions()
    assert [s["agent"] for s in listed] == ["Safari on iPhone", "Firefox 133 on Windows"]
    assert [s["current"] for s in listed] == [False, True]
    assert {s["address"] for s in listed} == {"127.0.0.1"}
    assert set(listed[0]) == {
        "handle", "current", "created", "last_active", "expires", "address", "agent", "bound"
    }  # fmt: skip
    assert [s["bound"] for s in listed] == [False, False]  # no DBSC client here
    newest, mine = listed
    assert mine["created"] < newest["created"] <= before
    assert before - 1 <= mine["last_active"] <= before + 1  # this very request
    assert newest["created"] <= newest["last_active"] <= before
    idle = config.session.idle_timeout
    assert clock() + idle - 5 < mine["expires"] <= clock() + idle + 1

    # the same handles on every request; nothing in them leads back to the session
    assert [s["handle"] for s in await laptop.sessions()] == [s["handle"] for s in listed]
    assert [s["handle"] for s in await phone.sessions()] == [s["handle"] for s in listed]
    for cookie, entry in ((laptop.cookie, mine), (phone.cookie, newest)):
        sid = cookie.split("|")[4].split(":", 1)[1]  # Tornado v2 signed value: the id field
        for secret in (sid, cookie, session_ref(sid), hashlib.sha256(sid.encode()).hexdigest()):
            assert secret not in entry["handle"] and entry["handle"] not in secret
        assert len(entry["handle"]) == 32
    # Bob sees only his own
    assert [s["current"] for s in await bob.sessions()] == [True]


async def test_not_logged_in_is_401(browsers: Any) -> None:
    anonymous = browsers()
    for method, path in (
        ("GET", "/api/sessions"),
        ("DELETE", "/api/sessions/" + "A" * 32),
        ("POST", "/api/sessions/end-others"),
    ):
        response = await anonymous.fetch(path, method, {} if method == "POST" else None)
        assert response.code == 401, path
        assert json.loads(response.body) == {"errorMessage": "Not logged in"}
    assert (await anonymous.fetch("/api/sessions/end-others")).code == 405


async def test_ending_another_session_signs_that_browser_out(browsers: Any) -> None:
    laptop, phone = browsers(FIREFOX), browsers(IPHONE)
    await laptop.login()
    await phone.login()
    (other,) = [s for s in await laptop.sessions() if not s["current"]]
    response = await laptop.fetch(f"/api/sessions/{other['handle']}", "DELETE")
    assert (response.code, json.loads(response.body)) == (200, {})
    assert session_cookie(response) is None  # the laptop keeps its own cookie
    assert await phone.me() == 401
    assert await laptop.me() == 200
    assert [s["current"] for s in await laptop.sessions()] == [True]
    # gone is gone: the same handle again is 404
    assert (await laptop.fetch(f"/api/sessions/{other['handle']}", "DELETE")).code == 404


async def test_a_handle_that_is_not_yours_is_404(browsers: Any) -> None:
    ann, bob = browsers(), browsers()
    await ann.login()
    await bob.login(BOB)
    (bobs,) = await bob.sessions()
    for handle in (bobs["handle"], "A" * 32, "x", "-" * 200):
        response = await ann.fetch(f"/api/sessions/{handle}", "DELETE")
        assert response.code == 404, handle
        assert json.loads(response.body) == {"errorMessage": "No such session"}
    assert (await ann.fetch("/api/sessions/a.b", "DELETE")).code == 404
    assert await bob.me() == 200


async def test_ending_the_current_session_is_a_logout(browsers: Any) -> None:
    laptop, phone = browsers(), browsers(IPHONE)
    await laptop.login()
    await phone.login()
    old_cookie = laptop.cookie
    (mine,) = [s for s in await laptop.sessions() if s["current"]]
    response = await laptop.fetch(f"/api/sessions/{mine['handle']}", "DELETE")
    assert (response.code, json.loads(response.body)) == (200, {})
    (set_cookie,) = response.headers.get_list("Set-Cookie")
    assert set_cookie.startswith('campus.sid=""; ') or set_cookie.startswith("campus.sid=; ")
    assert "expires=Thu, 01 Jan 1970" in set_cookie
    for attribute in ("HttpOnly", "Path=/", "SameSite=Lax"):
        assert attribute in set_cookie
    assert response.headers["Clear-Site-Data"] == '"cache", "storage"'  # as at /logout
    laptop.cookie = old_cookie
    assert await laptop.me() == 401  # gone from the store, not only from the browser
    assert await phone.me() == 200


async def test_end_others_keeps_only_this_session(browsers: Any) -> None:
    here, *others = [browsers() for _ in range(4)]
    bob = browsers()
    for browser in [here, *others]:
        await browser.login()
    await bob.login(BOB)
    response = await here.fetch("/api/sessions/end-others", "POST", {})
    assert (response.code, json.loads(response.body)) == (200, {"ended": 3})
    assert [await b.me() for b in others] == [401, 401, 401]
    assert await here.me() == 200 and await bob.me() == 200
    assert [s["current"] for s in await here.sessions()] == [True]
    response = await here.fetch("/api/sessions/end-others", "POST", {})
    assert json.loads(response.body) == {"ended": 0}


async def test_a_request_in_flight_cannot_bring_an_ended_session_back(
    browsers: Any, release: asyncio.Event, loaded: asyncio.Event
) -> None:
    laptop, phone = browsers(), browsers(IPHONE)
    await laptop.login()
    await phone.login()
    in_flight = asyncio.ensure_future(phone.fetch("/test/slow"))  # loaded, will write later
    await asyncio.wait_for(loaded.wait(), 5)
    response = await laptop.fetch("/api/sessions/end-others", "POST", {})
    assert json.loads(response.body) == {"ended": 1}
    release.set()
    late = await in_flight
    assert late.code == 200 and session_cookie(late) is None
    assert await phone.me() == 401
    assert len(await laptop.sessions()) == 1


async def test_cross_origin_ending_is_refused(browsers: Any, http_client: AsyncHTTPClient) -> None:
    ann, phone = browsers(), browsers(IPHONE)
    await ann.login()
    await phone.login()
    handle = next(s for s in await ann.sessions() if not s["current"])["handle"]
    for method, path in (
        ("DELETE", f"/api/sessions/{handle}"),
        ("POST", "/api/sessions/end-others"),
    ):
        response = await http_client.fetch(
            ann.base_url + path,
            method=method,
            body=None if method == "DELETE" else b"{}",
            headers={"Cookie": f"campus.sid={ann.cookie}", "Origin": "https://evil.test"},
            raise_error=False,
        )
        assert response.code == 403, path
    assert await phone.me() == 200


class TestBehindAProxy:
    @pytest.fixture
    def config(self, config: Config) -> Config:
        return dataclasses.replace(
            config, server=dataclasses.replace(config.server, trust_proxy=True)
        )

    async def test_the_address_is_the_one_the_access_log_sees(
        self, http_client: AsyncHTTPClient, base_url: str
    ) -> None:
        response = await http_client.fetch(
            base_url + "/login",
            method="POST",
            body=json.dumps({"email": ANN, "password": PASSWORD}),
            headers={"X-Forwarded-For": "198.51.100.1, 203.0.113.9"},
        )
        cookie = session_cookie(response)
        listed = await http_client.fetch(
            base_url + "/api/sessions", headers={"Cookie": f"campus.sid={cookie}"}
        )
        (entry,) = json.loads(listed.body)["sessions"]
        assert entry["address"] == "203.0.113.9"
        assert entry["agent"] == "Unknown browser" or entry["agent"].startswith("Tornado")


# -- Redis: costs, the index, Cluster and Sentinel ---------------------------------------


class TestRedisCosts:
    @pytest.fixture(autouse=True)
    def both_stores(self) -> None:
        """Redis only."""

    @pytest.fixture
    def config(self, users_file: Any, redis_server: Any, redis_db: redis.Redis) -> Config:
        return make_config(users_file, "redis", redis_server.url)

    async def test_api_me_still_costs_one_command_and_the_listing_one_round_trip(
        self, browsers: Any, redis_db: redis.Redis, services: Services
    ) -> None:
        here, *others = [browsers() for _ in range(3)]
        for browser in [here, *others]:
            await browser.login()
        await here.sessions()  # scripts loaded, connections open
        redis_db.config_resetstat()
        assert await here.me() == 200
        assert calls(redis_db) == {"getex": 1}  # the sign-in record costs reads nothing
        redis_db.config_resetstat()
        assert len(await here.sessions()) == 3
        # its own session's read, the index, then one pipeline: a GET and a PTTL per session
        assert calls(redis_db) == {"getex": 1, "zrange": 1, "get": 3, "pttl": 3}

    async def test_ending_sessions_prunes_the_index(
        self, browsers: Any, redis_db: redis.Redis, services: Services
    ) -> None:
        here, *others = [browsers() for _ in range(3)]
        for browser in [here, *others]:
            await browser.login()
        store = services.sessions.store
        assert isinstance(store, RedisStore)
        index = store.user_key(ANN)
        assert redis_db.zcard(index) == 3
        await here.fetch("/api/sessions/end-others", "POST", {})
        assert redis_db.zcard(index) == 1
        (mine,) = await here.sessions()
        await here.fetch(f"/api/sessions/{mine['handle']}", "DELETE")
        assert redis_db.exists(index) == 0


def calls(client: redis.Redis) -> dict[str, int]:
    stats = client.info("commandstats")
    return {
        name.removeprefix("cmdstat_"): value["calls"]
        for name, value in stats.items()
        if not name.startswith(("cmdstat_info", "cmdstat_config"))
    }


@pytest.mark.slow
@pytest.mark.parametrize("topology", ["redis_cluster", "redis_sentinel"])
class TestTopologies:
    @pytest.fixture(autouse=True)
    def both_stores(self) -> None:
        """A Cluster and a Sentinel group instead."""

    @pytest.fixture
    def services(
        self, request: pytest.FixtureRequest, topology: str, users_file: Any, clock: ContractClock
    ) -> Any:
        group = request.getfixturevalue(topology)
        group.flush()
        services = make_services(make_config(users_file, "redis", group.url), clock)
        yield services
        # closed on the test's loop by the test itself (see below)

    async def test_listing_and_ending(self, browsers: Any, services: Services) -> None:
        here, phone, other = browsers(), browsers(IPHONE), browsers()
        for browser in (here, phone, other):
            await browser.login()
        try:
            listed = await here.sessions()
            assert [s["created"] for s in listed] == sorted(
                (s["created"] for s in listed), reverse=True
            )
            assert sorted(s["agent"] for s in listed) == sorted(
                ["Firefox 133 on Windows", "Safari on iPhone", "Firefox 133 on Windows"]
            )
            handle = next(s for s in listed if s["agent"] == "Safari on iPhone")["handle"]
            assert (await here.fetch(f"/api/sessions/{handle}", "DELETE")).code == 200
            assert await phone.me() == 401
            response = await here.fetch("/api/sessions/end-others", "POST", {})
            assert json.loads(response.body) == {"ended": 1}
            assert await other.me() == 401 and await here.me() == 200
        finally:
            await services.sessions.store.close()


async def test_end_others_ends_more_than_one_listing_holds(
    browsers: Any, services: Services, clock: ContractClock
) -> None:
    """The listing is capped (MAX_LISTED, the newest); ending all others is not."""
    here = browsers()
    await here.login()
    store = services.sessions.store
    for _ in range(MAX_LISTED + 20):
        record = SessionRecord({}, int(clock()) + 3600, ANN)
        await store.create(new_session_id(), record, ttl=600)
    assert len(await here.sessions()) == MAX_LISTED
    response = await here.fetch("/api/sessions/end-others", "POST", {})
    assert json.loads(response.body) == {"ended": MAX_LISTED + 20}
    assert [s["current"] for s in await here.sessions()] == [True]

"""SessionMixin over HTTP: when it saves, what it sends, and every Tornado pitfall in STYLE.md.

Handlers are declared next to the tests that use them.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
import tornado.web
from tornado.httpclient import AsyncHTTPClient, HTTPResponse
from tornado.ioloop import IOLoop

from campus.config import Config
from campus.session import Session, StoreUnavailable
from campus.session.contract import ContractClock
from campus.session.store import SessionRecord, SessionStore
from campus.session.stores.memory import MemoryStore
from campus.session.stores.redis import RedisStore, connect
from campus.web.handlers.auth import SessionHandler
from campus.web.services import Services
from tests.support.apps import closing_store, make_config, make_services, session_cookie, user_index
from tests.support.servers import free_port

pytestmark = pytest.mark.gen_test


class SetHandler(SessionHandler):
    """Sets k=v; with ``hold=1``, only once the test sets the app's ``release`` event."""

    async def get(self) -> None:
        if self.get_argument("hold", ""):
            self.settings["held"].set()  # in flight, its session loaded
            await self.settings["release"].wait()
        self.session[self.get_argument("k")] = self.get_argument("v")
        self.write({})


class ReadHandler(SessionHandler):
    async def get(self) -> None:
        await asyncio.sleep(float(self.get_argument("delay", "0")))
        self.write({"data": dict(self.session)})


class TouchNothingHandler(SessionHandler):
    def get(self) -> None:
        self.write({})


class RedirectHandler(SessionHandler):
    def get(self) -> None:
        self.session["flash"] = "saved before you got here"
        self.redirect("/read")


class ExplicitFinishHandler(SessionHandler):
    def get(self) -> None:
        self.session["explicit"] = True
        self.finish({"finished": "explicitly"})  # then auto-finish runs: must not break


class AwaitedFinishHandler(SessionHandler):
    async def get(self) -> None:
        self.session["awaited"] = True
        await self.finish({"finished": "awaited"})


class BoomHandler(SessionHandler):
    def get(self) -> None:
        self.session["half"] = "done"
        raise RuntimeError("boom")


class NestedNonJsonHandler(SessionHandler):
    def get(self) -> None:
        self.session["things"] = []
        self.session["things"].append(object())  # slips past the assignment check
        self.write({})


class LoginHandler(SessionHandler):
    def get(self) -> None:
        self.session.regenerate()
        self.session["user"] = {"email": self.get_argument("email", "ann@campus.test")}
        self.write({})


class LogoutHandler(SessionHandler):
    def get(self) -> None:
        self.session.destroy()
        self.write({})


ROUTES = [
    (r"/set", SetHandler),
    (r"/read", ReadHandler),
    (r"/nothing", TouchNothingHandler),
    (r"/redirect", RedirectHandler),
    (r"/explicit", ExplicitFinishHandler),
    (r"/awaited", AwaitedFinishHandler),
    (r"/boom", BoomHandler),
    (r"/nested", NestedNonJsonHandler),
    (r"/login", LoginHandler),
    (r"/logout", LogoutHandler),
]


def application(services: Services) -> tornado.web.Application:
    return tornado.web.Application(
        ROUTES,
        services=services,
        session_manager=services.sessions,
        held=asyncio.Event(),
        release=asyncio.Event(),
    )


@pytest.fixture
def app(services: Services) -> tornado.web.Application:
    return application(services)


class Browser:
    """Keeps the session cookie between requests, like a browser would."""

    def __init__(self, client: AsyncHTTPClient, base_url: str) -> None:
        self.client, self.base_url, self.cookie = client, base_url, ""

    async def get(self, path: str, **kwargs: Any) -> HTTPResponse:
        headers = {"Cookie": f"campus.sid={self.cookie}"} if self.cookie else {}
        response = await self.client.fetch(
            self.base_url + path,
            headers=headers,
            raise_error=False,
            follow_redirects=False,
            **kwargs,
        )
        value = session_cookie(response)
        if value is not None:
            self.cookie = value
        return response

    async def data(self) -> dict[str, Any]:
        body = json.loads((await self.get("/read")).body)
        return dict(body["data"])


@pytest.fixture
def browser(http_client: AsyncHTTPClient, base_url: str) -> Browser:
    return Browser(http_client, base_url)


def error(response: HTTPResponse) -> str:
    assert response.headers["Content-Type"].startswith("application/json")
    return str(json.loads(response.body)["errorMessage"])


# -- saving only what changed ---------------------------------------------------------------


async def test_an_untouched_new_session_sets_no_cookie_and_stores_nothing(
    browser: Browser, services: Services
) -> None:
    response = await browser.get("/nothing")
    assert session_cookie(response) is None
    assert await user_index(services.sessions.store).count() == 0


@pytest.mark.session_config(save_uninitialized=True)
async def test_save_uninitialized_stores_even_an_empty_session(
    browser: Browser, services: Services
) -> None:
    response = await browser.get("/nothing")
    assert session_cookie(response)
    assert await user_index(services.sessions.store).count() == 1


async def test_a_session_round_trips_and_a_read_writes_nothing(
    browser: Browser, services: Services
) -> None:
    first = await browser.get("/set?k=colour&v=green")
    assert session_cookie(first)
    assert await browser.data() == {"colour": "green"}
    read = await browser.get("/read")
    assert session_cookie(read) is None  # nothing changed, cookie fresh: no Set-Cookie


async def test_values_that_json_cannot_hold_fail_at_the_assignment() -> None:
    session = Session()
    with pytest.raises(TypeError, match="session\\['when'\\] cannot be stored as JSON"):
        session["when"] = time  # a module
    with pytest.raises(TypeError):
        session[1] = "x"  # type: ignore[index]
    assert dict(session) == {}


# -- the pitfalls ---------------------------------------------------------------------------


class SlowStore:
    """A real MemoryStore whose writes take a while, to widen every race."""

    def __init__(self, inner: MemoryStore, delay: float) -> None:
        self.inner, self.delay, self.name = inner, delay, inner.name

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def create(self, sid: str, record: SessionRecord, **kwargs: Any) -> None:
        await asyncio.sleep(self.delay)
        await self.inner.create(sid, record, **kwargs)

    async def update(
        self, sid: str, changed: Mapping[str, str], deleted: list[str], **kw: Any
    ) -> bool:
        await asyncio.sleep(self.delay)
        return await self.inner.update(sid, changed, deleted, **kw)


def with_store(services: Services, store: Any) -> Services:
    services.sessions.store = store
    return services


async def test_a_redirect_after_a_change_is_saved_before_the_client_sees_it(
    browser: Browser, services: Services
) -> None:
    assert isinstance(services.sessions.store, MemoryStore)
    memory = services.sessions.store
    with_store(services, SlowStore(memory, 0.3))
    started = time.monotonic()
    response = await browser.get("/redirect")
    assert response.code == 302 and response.headers["Location"] == "/read"
    assert time.monotonic() - started >= 0.3  # the response waited for the store
    sid = services.sessions.signer.verify("campus.sid", browser.cookie, max_age=3600)
    assert sid is not None
    stored = await memory.load(sid[0], touch=None)  # at once: no write still in flight
    assert stored is not None and stored.decoded() == {"flash": "saved before you got here"}


async def test_explicit_and_awaited_finish_save_once_and_answer_once(
    browser: Browser, services: Services
) -> None:
    explicit = await browser.get("/explicit")
    assert json.loads(explicit.body) == {"finished": "explicitly"}
    awaited = await browser.get("/awaited")
    assert json.loads(awaited.body) == {"finished": "awaited"}
    assert await browser.data() == {"explicit": True, "awaited": True}


async def test_an_exception_never_hangs_and_never_saves(
    browser: Browser, services: Services
) -> None:
    response = await asyncio.wait_for(browser.get("/boom"), 5)
    assert response.code == 500 and error(response) == "Internal server error"
    assert session_cookie(response) is None
    assert await user_index(services.sessions.store).count() == 0


async def test_a_nested_value_json_cannot_hold_is_a_500_not_a_hang(
    browser: Browser, services: Services
) -> None:
    response = await asyncio.wait_for(browser.get("/nested"), 5)
    assert response.code == 500 and b"Traceback" not in response.body
    assert session_cookie(response) is None
    assert await user_index(services.sessions.store).count() == 0


@pytest.fixture
def dead_redis_services(
    config: Config, clock: ContractClock, io_loop: IOLoop
) -> Iterator[Services]:
    services = make_services(config, clock)
    dead = RedisStore(connect(f"redis://127.0.0.1:{free_port()}/0", timeout=0.5), clock=clock)
    yield from closing_store(with_store(services, dead), io_loop)


async def test_store_down_on_save_is_503_with_no_cookie(
    http_client: AsyncHTTPClient, base_url: str, services: Services, dead_redis_services: Services
) -> None:
    with_store(services, dead_redis_services.sessions.store)
    started = time.monotonic()
    response = await http_client.fetch(base_url + "/set?k=a&v=b", raise_error=False)
    assert time.monotonic() - started < 2.5
    assert response.code == 503 and error(response) == "Session store unavailable"
    assert response.headers["Retry-After"] == "1"
    assert session_cookie(response) is None


async def test_store_down_on_load_is_503_with_no_cookie(
    browser: Browser, services: Services, dead_redis_services: Services
) -> None:
    await browser.get("/set?k=a&v=b")
    with_store(services, dead_redis_services.sessions.store)
    response = await browser.get("/read")
    assert response.code == 503 and error(response) == "Session store unavailable"
    assert "Set-Cookie" not in response.headers


# -- semantics: both stores -----------------------------------------------------------------


async def test_concurrent_requests_keep_each_others_writes(
    app: tornado.web.Application, browser: Browser, store_kind: str
) -> None:
    await browser.get("/set?k=start&v=1")
    slow = asyncio.ensure_future(browser.get("/set?k=a&v=slow&hold=1"))
    await asyncio.wait_for(app.settings["held"].wait(), 5)  # loaded before the other one ran
    await browser.get("/set?k=b&v=fast")
    app.settings["release"].set()  # and saved after it
    await slow
    assert await browser.data() == {"start": "1", "a": "slow", "b": "fast"}


async def test_a_request_in_flight_during_logout_cannot_resurrect_the_session(
    app: tornado.web.Application, browser: Browser, services: Services, store_kind: str
) -> None:
    await browser.get("/login")
    cookie = browser.cookie
    slow = asyncio.ensure_future(browser.get("/set?k=late&v=write&hold=1"))
    await asyncio.wait_for(app.settings["held"].wait(), 5)  # in flight, its session loaded
    await browser.get("/logout")
    app.settings["release"].set()
    late = await slow
    assert session_cookie(late) is None  # no cookie for a session that no longer exists
    browser.cookie = cookie
    assert await browser.data() == {}
    assert await user_index(services.sessions.store).count() == 0


async def test_regenerate_keeps_the_data_and_retires_the_old_id(
    browser: Browser, services: Services, store_kind: str
) -> None:
    await browser.get("/set?k=cart&v=3-books")
    anonymous = browser.cookie
    await browser.get("/login")
    assert browser.cookie != anonymous
    assert await browser.data() == {"cart": "3-books", "user": {"email": "ann@campus.test"}}
    browser.cookie = anonymous
    assert await browser.data() == {}
    assert await user_index(services.sessions.store).count() == 1


async def test_logout_everywhere_destroys_every_session_of_the_user(
    http_client: AsyncHTTPClient, base_url: str, services: Services, store_kind: str
) -> None:
    ann_laptop, ann_phone, bob = (Browser(http_client, base_url) for _ in range(3))
    await ann_laptop.get("/login")
    await ann_phone.get("/login")
    await bob.get("/login?email=bob@campus.test")
    assert await user_index(services.sessions.store).delete_user("ann@campus.test") == 2
    assert await ann_laptop.data() == {}
    assert await ann_phone.data() == {}
    assert (await bob.data())["user"] == {"email": "bob@campus.test"}


async def test_destroy_clears_the_cookie_with_the_attributes_it_was_set_with(
    browser: Browser,
) -> None:
    login = await browser.get("/login")
    logout = await browser.get("/logout")
    set_header = next(
        h for h in login.headers.get_list("Set-Cookie") if h.startswith("campus.sid=")
    )
    clear_header = next(
        h for h in logout.headers.get_list("Set-Cookie") if h.startswith("campus.sid=")
    )

    def attributes(header: str) -> set[str]:
        parts = {p.strip() for p in header.split(";")[1:]}
        return {p for p in parts if not p.lower().startswith(("max-age", "expires"))}

    assert (
        attributes(set_header) == attributes(clear_header) == {"HttpOnly", "Path=/", "SameSite=Lax"}
    )
    assert clear_header.startswith('campus.sid="";') or clear_header.startswith("campus.sid=;")
    assert "expires=thu, 01 jan 1970" in clear_header.lower()


# -- expiry and the rolling cookie ----------------------------------------------------------


async def test_the_idle_timeout_is_enforced_by_the_server(
    browser: Browser, clock: ContractClock
) -> None:
    await browser.get("/login")
    clock.advance(1799)
    assert "user" in await browser.data()  # and the read pushed the idle expiry
    clock.advance(1799)
    assert "user" in await browser.data()
    clock.advance(1801)
    assert await browser.data() == {}


async def test_the_absolute_timeout_holds_however_active_the_user(
    browser: Browser, clock: ContractClock
) -> None:
    await browser.get("/login")
    for _ in range(28800 // 1200 - 1):
        clock.advance(1200)
        assert "user" in await browser.data()
    clock.advance(1201)
    assert await browser.data() == {}


async def test_the_rolling_cookie_is_resent_at_most_once_a_minute_and_never_to_strangers(
    browser: Browser, clock: ContractClock, http_client: AsyncHTTPClient, base_url: str
) -> None:
    await browser.get("/login")
    clock.advance(30)
    assert session_cookie(await browser.get("/read")) is None
    clock.advance(31)
    refreshed = await browser.get("/read")
    assert session_cookie(refreshed)
    assert "Max-Age=1800" in refreshed.headers["Set-Cookie"]
    stranger = await http_client.fetch(base_url + "/read", headers={"Cookie": "campus.sid=junk"})
    assert "Set-Cookie" not in stranger.headers


async def test_secret_rotation_keeps_old_cookies_until_the_old_secret_is_dropped(
    users_file: Any, clock: ContractClock
) -> None:
    old, new = "o" * 40, "n" * 40
    store: SessionStore = MemoryStore(max_sessions=10, clock=clock)

    def manager(*secrets: str) -> Any:
        services = make_services(make_config(users_file, secret=secrets), clock)
        return with_store(services, store).sessions

    before = manager(old)
    pending = await before.load(None)
    pending.session["user"] = {"email": "ann@campus.test"}
    commit = pending.commit("finish()")
    assert commit.write is not None and await commit.write()
    assert commit.cookie is not None and commit.cookie.value is not None
    value = commit.cookie.value
    assert dict((await manager(new, old).load(value)).session) == pending.session
    assert dict((await manager(new).load(value)).session) == {}


async def test_store_errors_are_the_only_errors(clock: ContractClock) -> None:
    store = RedisStore(connect(f"redis://127.0.0.1:{free_port()}/0", timeout=0.2), clock=clock)
    with pytest.raises(StoreUnavailable):
        await store.load("x" * 43, touch=1)

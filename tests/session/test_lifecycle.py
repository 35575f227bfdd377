"""Every way a Tornado handler can end, on a bare RequestHandler, with each store.

One test per row of the table in docs/session-library.md: what is stored and which cookie
is sent. No campus handler is involved: ``Handler`` is ``SessionMixin`` on Tornado's own
``RequestHandler``, the way an outsider would use the library.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator, Mapping
from typing import Any, cast

import pytest
import tornado.template
import tornado.web
from tornado.httpclient import AsyncHTTPClient, HTTPResponse
from tornado.ioloop import IOLoop

from campus.session import SessionManager, SessionMixin, SessionStore, StoreUnavailable
from campus.session.store import SessionRecord, new_session_id
from campus.session.stores.memory import MemoryStore
from campus.session.stores.redis import RedisStore, connect
from tests.support.apps import session_cookie
from tests.support.rawhttp import build, exchange
from tests.support.servers import RedisServer, free_port

pytestmark = pytest.mark.gen_test

SECRET = "a test secret of at least thirty-two characters"


class Recording:
    """A real store, with a log of the writes the session layer asked of it."""

    def __init__(self, inner: SessionStore, delay: float = 0.0) -> None:
        self.inner, self.delay, self.writes = inner, delay, list[str]()
        self.name = inner.name

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def load(self, sid: str, *, touch: int | None) -> SessionRecord | None:
        return await self.inner.load(sid, touch=touch)

    async def create(
        self, sid: str, record: SessionRecord, *, ttl: int, replaces: str | None = None
    ) -> None:
        await asyncio.sleep(self.delay)
        await self.inner.create(sid, record, ttl=ttl, replaces=replaces)
        self.writes.append("create" + (" replacing" if replaces else ""))

    async def update(
        self, sid: str, changed: Mapping[str, str], deleted: list[str], *, ttl: int, user: Any
    ) -> bool:
        await asyncio.sleep(self.delay)
        landed = await self.inner.update(sid, changed, deleted, ttl=ttl, user=user)
        self.writes.append("update" if landed else "update (gone)")
        return landed

    async def delete(self, sid: str) -> None:
        await self.inner.delete(sid)
        self.writes.append("delete")


# -- the handlers: one per way of ending --------------------------------------------------


class Handler(SessionMixin, tornado.web.RequestHandler):
    def on_finish(self) -> None:
        self.settings["finished"].set()


class Set(Handler):
    def get(self) -> None:
        self.session["n"] = int(self.get_argument("n", "1"))
        self.write({"n": self.session["n"]})


class Read(Handler):
    def get(self) -> None:
        self.write({"data": dict(self.session)})


class ExplicitFinish(Handler):
    def get(self) -> None:
        self.session["n"] = 1
        self.finish("explicit")  # auto-finish then does nothing


class AwaitedFinish(Handler):
    async def get(self) -> None:
        self.session["n"] = 1
        await self.finish("awaited")


class Redirect(Handler):
    def get(self) -> None:
        self.session["flash"] = "saved before you got here"
        self.redirect("/read")


class RedirectInPrepare(Handler):
    async def prepare(self) -> None:
        await super().prepare()
        self.session["flash"] = "sent from prepare()"
        self.redirect("/read")

    def get(self) -> None:
        self.settings["method_ran"] = True  # never: the handler finished in prepare()


class Render(Handler):
    def get(self) -> None:
        self.session["n"] = 1
        self.render("page.html", n=self.session["n"])


class SendError(Handler):
    def get(self) -> None:
        self.session["n"] = 1
        self.send_error(int(self.get_argument("status")))


class RaiseHttpError(Handler):
    def get(self) -> None:
        self.session["n"] = 1
        raise tornado.web.HTTPError(int(self.get_argument("status")))


class RaiseBeforeFinish(Handler):
    def get(self) -> None:
        self.session["n"] = 1
        raise RuntimeError("boom")


class RaiseAfterFinish(Handler):
    def get(self) -> None:
        self.session["flash"] = "kept"
        self.redirect("/read")
        raise RuntimeError("boom after redirect")


class WriteAfterFinish(Handler):
    def get(self) -> None:
        self.session["flash"] = "kept"
        self.redirect("/read")
        self.write("appended?")


class FlushThenChange(Handler):
    async def get(self) -> None:
        self.write("head;")
        await self.flush()
        self.session["n"] = 1  # raises: the headers (and the cookie's place) are gone


class ChangeThenFlush(Handler):
    async def get(self) -> None:
        self.session["n"] = 1
        self.write("head;")
        await self.flush()  # stored here, before the headers go out
        self.write("tail")


class FlushThenNestedChange(Handler):
    async def get(self) -> None:
        self.session["cart"] = []
        await self.flush()
        self.session["cart"].append("book")  # no assignment: caught when the response ends


class SaveThenFail(Handler):
    async def get(self) -> None:
        self.session["n"] = 1
        await self.save_session()
        raise RuntimeError("boom after save_session()")


class SaveThenAnswer(Handler):
    async def get(self) -> None:
        self.session["n"] = 1
        await self.save_session()
        then = self.get_argument("then")
        if then == "flush":
            await self.flush()
        elif then == "404":
            raise tornado.web.HTTPError(404)
        self.write("answered")


class Slow(Handler):
    async def get(self) -> None:
        self.settings["running"].set()
        await self.settings["release"].wait()  # the client hangs up meanwhile
        self.session["n"] = 1


class LongPoll(Handler):
    async def prepare(self) -> None:
        await super().prepare()
        self.closed = asyncio.Event()

    async def get(self) -> None:
        self.session["waiting"] = True
        self.settings["running"].set()
        await self.closed.wait()

    def on_connection_close(self) -> None:
        self.closed.set()


class NotJson(Handler):
    def get(self) -> None:
        self.session["things"] = []
        self.session["things"].append(object())  # slips past the assignment check


class BodyWith204(Handler):
    def get(self) -> None:
        self.session["n"] = 1
        self.set_status(204)
        self.write("a body a 204 cannot have")


class Destroy(Handler):
    def get(self) -> None:
        self.session.destroy()


class Regenerate(Handler):
    def get(self) -> None:
        self.session.regenerate()
        self.session["user"] = "ann"


ROUTES: list[Any] = [
    (r"/set", Set),
    (r"/read", Read),
    (r"/explicit", ExplicitFinish),
    (r"/awaited", AwaitedFinish),
    (r"/redirect", Redirect),
    (r"/redirect-in-prepare", RedirectInPrepare),
    (r"/render", Render),
    (r"/send-error", SendError),
    (r"/http-error", RaiseHttpError),
    (r"/raise", RaiseBeforeFinish),
    (r"/raise-after-finish", RaiseAfterFinish),
    (r"/write-after-finish", WriteAfterFinish),
    (r"/flush-then-change", FlushThenChange),
    (r"/change-then-flush", ChangeThenFlush),
    (r"/flush-then-nested", FlushThenNestedChange),
    (r"/save-then-fail", SaveThenFail),
    (r"/save-then-answer", SaveThenAnswer),
    (r"/slow", Slow),
    (r"/long-poll", LongPoll),
    (r"/not-json", NotJson),
    (r"/body-with-204", BodyWith204),
    (r"/destroy", Destroy),
    (r"/regenerate", Regenerate),
]


# -- fixtures -----------------------------------------------------------------------------


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest, io_loop: IOLoop) -> Iterator[Recording]:
    if request.param == "memory":
        yield Recording(MemoryStore(max_sessions=100))
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    request.getfixturevalue("redis_db")
    inner = RedisStore.from_url(server.url, prefix="lifecycle:", timeout=1.0)
    yield Recording(inner)
    io_loop.run_sync(inner.close)


@pytest.fixture
def manager(store: Recording) -> SessionManager:
    return SessionManager(cast(SessionStore, store), secrets=[SECRET])


@pytest.fixture
def app(manager: SessionManager) -> tornado.web.Application:
    return tornado.web.Application(
        ROUTES,
        session_manager=manager,
        running=asyncio.Event(),  # set by the handlers that wait (Slow, LongPoll)
        release=asyncio.Event(),  # what Slow waits for
        finished=asyncio.Event(),
        template_loader=tornado.template.DictLoader({"page.html": "<p>{{ n }}</p>"}),
    )


class Client:
    """Keeps the session cookie between requests, like a browser."""

    def __init__(self, http: AsyncHTTPClient, base_url: str, manager: SessionManager) -> None:
        self.http, self.base_url, self.manager, self.cookie = http, base_url, manager, ""

    async def get(self, path: str) -> HTTPResponse:
        headers = {"Cookie": f"campus.sid={self.cookie}"} if self.cookie else {}
        response = await self.http.fetch(
            self.base_url + path, headers=headers, raise_error=False, follow_redirects=False
        )
        value = session_cookie(response)
        if value is not None:
            self.cookie = value
        return response

    async def stored(self) -> dict[str, Any] | None:
        """What the store holds for the session the cookie names (None: no record)."""
        verified = self.manager.signer.verify("campus.sid", self.cookie, max_age=3600)
        if verified is None:
            return None
        record = await self.manager.store.load(verified[0], touch=None)
        return None if record is None else record.decoded()


@pytest.fixture
def client(http_client: AsyncHTTPClient, base_url: str, manager: SessionManager) -> Client:
    return Client(http_client, base_url, manager)


async def logged_in(client: Client, store: Recording) -> None:
    """A stored session {"n": 1} with a fresh cookie, and a clean write log."""
    await client.get("/set?n=1")
    assert await client.stored() == {"n": 1}
    store.writes.clear()


# -- the table ------------------------------------------------------------------------------


async def test_return_stores_the_change_and_sets_the_cookie(
    client: Client, store: Recording
) -> None:
    response = await client.get("/set?n=7")
    assert response.code == 200 and session_cookie(response)
    assert await client.stored() == {"n": 7}
    assert store.writes == ["create"]
    changed = await client.get("/set?n=8")
    assert session_cookie(changed) is None  # same id, cookie fresh: nothing to re-send
    assert await client.stored() == {"n": 8}
    assert store.writes == ["create", "update"]


async def test_a_read_only_request_writes_nothing_and_sends_no_cookie(
    client: Client, store: Recording
) -> None:
    await logged_in(client, store)
    response = await client.get("/read")
    assert json.loads(response.body) == {"data": {"n": 1}}
    assert session_cookie(response) is None
    assert store.writes == []


async def test_store_first_cookie_second_response_last(client: Client, store: Recording) -> None:
    store.delay = 0.3
    started = time.monotonic()
    response = await client.get("/redirect")
    assert time.monotonic() - started >= 0.3  # the response waited for the store
    assert response.code == 302 and session_cookie(response)
    assert store.writes == ["create"]  # already done when the client saw the 302


@pytest.mark.parametrize("path", ["/explicit", "/awaited"])
async def test_finish_stores_once_and_answers_once(
    client: Client, store: Recording, path: str
) -> None:
    response = await client.get(path)
    assert response.body == path[1:].encode()
    assert session_cookie(response)
    assert await client.stored() == {"n": 1}
    assert store.writes == ["create"]


async def test_redirect_stores_before_the_302_and_carries_the_cookie(
    client: Client, store: Recording
) -> None:
    response = await client.get("/redirect")
    assert response.code == 302 and response.headers["Location"] == "/read"
    assert session_cookie(response)
    assert await client.stored() == {"flash": "saved before you got here"}


async def test_a_redirect_in_prepare_stores_and_the_method_never_runs(
    client: Client, store: Recording, app: tornado.web.Application
) -> None:
    response = await client.get("/redirect-in-prepare")
    assert response.code == 302 and session_cookie(response)
    assert store.writes == ["create"]
    assert await client.stored() == {"flash": "sent from prepare()"}
    assert "method_ran" not in app.settings


async def test_render_stores_and_sets_the_cookie(client: Client, store: Recording) -> None:
    response = await client.get("/render")
    assert response.body == b"<p>1</p>" and session_cookie(response)
    assert await client.stored() == {"n": 1}


@pytest.mark.parametrize("path", ["/send-error", "/http-error"])
async def test_an_error_below_500_stores_and_sets_the_cookie(
    client: Client, store: Recording, path: str
) -> None:
    response = await client.get(path + "?status=403")
    assert response.code == 403 and session_cookie(response)
    assert await client.stored() == {"n": 1}


@pytest.mark.parametrize("path", ["/send-error?status=503", "/http-error?status=503", "/raise"])
async def test_a_5xx_stores_nothing_and_sets_no_cookie(
    client: Client, store: Recording, path: str
) -> None:
    await logged_in(client, store)
    response = await client.get(path)
    assert response.code >= 500
    assert "Set-Cookie" not in response.headers
    assert store.writes == []


async def test_an_exception_after_redirect_sends_the_redirect(
    client: Client, store: Recording, caplog: pytest.LogCaptureFixture
) -> None:
    response = await client.get("/raise-after-finish")
    assert response.code == 302 and response.body == b""
    assert session_cookie(response)
    assert await client.stored() == {"flash": "kept"}
    assert "boom after redirect" in caplog.text  # logged, as plain Tornado does


async def test_a_write_after_redirect_raises_and_appends_nothing(
    client: Client, store: Recording, caplog: pytest.LogCaptureFixture
) -> None:
    response = await client.get("/write-after-finish")
    assert response.code == 302 and response.body == b""
    assert await client.stored() == {"flash": "kept"}
    assert "Cannot write() after finish()" in caplog.text


async def test_a_change_after_flush_raises_and_stores_nothing(
    client: Client, store: Recording, caplog: pytest.LogCaptureFixture
) -> None:
    response = await client.get("/flush-then-change")
    assert response.code == 200 and response.body.startswith(b"head;")
    assert session_cookie(response) is None
    assert store.writes == []  # no orphan record
    assert "session changed after flush()" in caplog.text


async def test_a_change_before_flush_is_stored_before_the_headers(
    client: Client, store: Recording
) -> None:
    response = await client.get("/change-then-flush")
    assert response.body == b"head;tail"
    assert session_cookie(response)
    assert await client.stored() == {"n": 1}


async def test_a_nested_change_after_flush_is_an_error_at_finish(
    client: Client, store: Recording, caplog: pytest.LogCaptureFixture
) -> None:
    await client.get("/flush-then-nested")
    assert await client.stored() == {"cart": []}  # what flush() stored, nothing after
    assert store.writes == ["create"]
    assert "session changed after flush()" in caplog.text


async def test_save_session_then_a_failure_keeps_the_write_but_sends_no_cookie(
    client: Client, store: Recording
) -> None:
    response = await client.get("/save-then-fail")
    assert response.code == 500
    assert "Set-Cookie" not in response.headers
    assert store.writes == ["create"]  # asked for explicitly, before the failure


@pytest.mark.parametrize(("then", "status"), [("return", 200), ("flush", 200), ("404", 404)])
async def test_save_session_then_an_answer_carries_the_cookie(
    client: Client, store: Recording, then: str, status: int
) -> None:
    """The cookie save_session() earned leaves with the headers, flushed or at the end."""
    response = await client.get(f"/save-then-answer?then={then}")
    assert response.code == status
    assert session_cookie(response)
    assert store.writes == ["create"]
    assert await client.stored() == {"n": 1}


async def test_client_gone_the_change_is_stored_the_cookie_lost(
    app: tornado.web.Application, http_server: Any, http_port: int, store: Recording
) -> None:
    finished: asyncio.Event = app.settings["finished"]
    _reader, writer = await asyncio.open_connection("127.0.0.1", http_port)
    writer.write(build("GET", "/slow"))
    await writer.drain()
    await asyncio.wait_for(app.settings["running"].wait(), 5)  # the handler is running
    writer.close()
    await writer.wait_closed()
    app.settings["release"].set()
    await asyncio.wait_for(finished.wait(), 5)
    assert store.writes == ["create"]  # the handler did its work; nobody got the cookie


async def test_on_connection_close_the_handler_ends_and_its_change_is_stored(
    app: tornado.web.Application, http_server: Any, http_port: int, store: Recording
) -> None:
    finished: asyncio.Event = app.settings["finished"]
    _reader, writer = await asyncio.open_connection("127.0.0.1", http_port)
    writer.write(build("GET", "/long-poll").replace(b"Connection: close", b"X-Keep: 1"))
    await writer.drain()
    await asyncio.wait_for(app.settings["running"].wait(), 5)
    writer.close()
    await asyncio.wait_for(finished.wait(), 5)
    assert store.writes == ["create"]


async def test_a_value_json_cannot_hold_is_a_500_storing_nothing(
    client: Client, store: Recording
) -> None:
    response = await asyncio.wait_for(client.get("/not-json"), 5)
    assert response.code == 500 and "Set-Cookie" not in response.headers
    assert store.writes == []


async def test_a_body_tornado_refuses_is_a_500_storing_nothing(
    client: Client, store: Recording
) -> None:
    response = await asyncio.wait_for(client.get("/body-with-204"), 5)
    assert response.code == 500 and "Set-Cookie" not in response.headers
    assert store.writes == []


async def test_destroy_deletes_the_record_and_expires_the_cookie(
    client: Client, store: Recording
) -> None:
    await logged_in(client, store)
    old = client.cookie
    response = await client.get("/destroy")
    assert session_cookie(response) == ""
    assert "expires=thu, 01 jan 1970" in response.headers["Set-Cookie"].lower()
    client.cookie = old
    assert await client.stored() is None
    assert store.writes == ["delete"]


async def test_regenerate_moves_the_data_to_a_new_id(client: Client, store: Recording) -> None:
    await logged_in(client, store)
    old = client.cookie
    await client.get("/regenerate")
    assert client.cookie != old
    assert await client.stored() == {"n": 1, "user": "ann"}
    assert store.writes == ["create replacing"]
    client.cookie = old
    assert await client.stored() is None


async def test_the_store_failing_at_commit_is_a_503_with_no_cookie(
    http_client: AsyncHTTPClient, base_url: str, manager: SessionManager
) -> None:
    """Only Redis can be down; the memory store cannot fail."""
    manager.store = RedisStore(connect(f"redis://127.0.0.1:{free_port()}/0", timeout=0.5))
    response = await http_client.fetch(base_url + "/set", raise_error=False)
    assert response.code == 503 and "Set-Cookie" not in response.headers


# -- several Cookie headers -----------------------------------------------------------------


async def test_the_session_cookie_is_found_in_a_second_cookie_header(
    client: Client, http_port: int
) -> None:
    await client.get("/set?n=5")
    request = build(
        "GET", "/read", [("Cookie", "theme=dark"), ("Cookie", f"campus.sid={client.cookie}")]
    )
    loop = asyncio.get_running_loop()
    response = await loop.run_in_executor(None, exchange, http_port, request)
    assert response.status == 200
    assert json.loads(response.body) == {"data": {"n": 5}}


async def test_one_cookie_header_with_several_cookies_still_works(
    client: Client, http_port: int
) -> None:
    await client.get("/set?n=6")
    request = build("GET", "/read", [("Cookie", f"a=1; campus.sid={client.cookie}; b=2")])
    loop = asyncio.get_running_loop()
    response = await loop.run_in_executor(None, exchange, http_port, request)
    assert json.loads(response.body) == {"data": {"n": 6}}


@pytest.mark.parametrize("split", [False, True])
async def test_a_stale_or_planted_session_cookie_in_front_does_not_hide_the_live_one(
    client: Client, http_port: int, manager: SessionManager, split: bool
) -> None:
    """Browsers send a more specific cookie of the same name first (another path, or one
    planted for a parent domain): each value is tried, the first live session wins."""
    await client.get("/set?n=7")
    stale = manager.signer.sign("campus.sid", new_session_id())  # verifies, names nothing
    values = ["garbage", stale, client.cookie]
    headers = (
        [("Cookie", f"campus.sid={value}") for value in values]
        if split
        else [("Cookie", "; ".join(f"campus.sid={value}" for value in values))]
    )
    loop = asyncio.get_running_loop()
    response = await loop.run_in_executor(None, exchange, http_port, build("GET", "/read", headers))
    assert json.loads(response.body) == {"data": {"n": 7}}


def test_store_unavailable_is_exported() -> None:
    assert issubclass(StoreUnavailable, Exception)

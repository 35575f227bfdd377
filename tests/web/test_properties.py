"""Properties of the whole app, in-process, over real sockets, with hypothesis inventing the
input: cookie values, JSON bodies, headers and URL paths.

Whatever comes in: never a 5xx, never a traceback, never a byte from outside static/ and
dist/ (a secret is planted next to them and behind symlinks inside them), never a session
created for garbage, and every error from the app is ``{"errorMessage": ...}``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import tornado.web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port

from campus.config import LoginConfig
from campus.http.connections import MAX_BODY_SIZE
from campus.session.stores.memory import MemoryStore
from campus.web.app import make_app
from campus.web.services import Services
from tests.support.apps import PASSWORD, make_config, make_services
from tests.support.rawhttp import SECRET, Response, build, exchange, plant_site

PROPERTY = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


class AppThread:
    """An Application served by its own event loop in a thread: hypothesis tests are
    synchronous, and talk to it over real sockets like any client."""

    def __init__(self, app: tornado.web.Application) -> None:
        self.app = app
        self.port = 0
        self._ready = threading.Event()
        self._thread = threading.Thread(target=asyncio.run, args=(self._serve(),), daemon=True)

    def __enter__(self) -> AppThread:
        self._thread.start()
        assert self._ready.wait(10), "the app did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    async def _serve(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        sock, self.port = bind_unused_port()
        server = HTTPServer(self.app, max_body_size=MAX_BODY_SIZE)
        server.add_sockets([sock])
        self._ready.set()
        await self._stop.wait()
        server.stop()
        await server.close_all_connections()


@dataclasses.dataclass
class Live:
    port: int
    root: Path
    services: Services
    served: set[bytes]
    cookie: str  # a valid session cookie: the one session in the store
    sessions: int = 1

    def send(self, request: bytes) -> Response:
        return exchange(self.port, request)

    @property
    def store(self) -> MemoryStore:
        store = self.services.sessions.store
        assert isinstance(store, MemoryStore)
        return store


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, users_file: Path) -> Iterator[Live]:
    root = tmp_path_factory.mktemp("site")
    served = plant_site(root)
    config = make_config(users_file)
    config = dataclasses.replace(
        config,
        server=dataclasses.replace(config.server, trust_proxy=True),  # more code to reach
        login=LoginConfig(max_failures=1_000_000, window=60),  # reach the password check
    )
    services = make_services(config, time.time)
    with AppThread(make_app(services, root=str(root))) as thread:
        body = json.dumps({"email": "ann@campus.test", "password": PASSWORD}).encode()
        response = exchange(thread.port, build("POST", "/login", body=body))
        assert response.status == 200, response.raw
        (session,) = [c for c in response.header_list("Set-Cookie") if c.startswith("campus.sid=")]
        cookie = session.split(";", 1)[0].split("=", 1)[1]
        yield Live(thread.port, root, services, served, cookie)


def assert_sane(live: Live, response: Response, *, head: bool = False) -> None:
    """What holds for any answer to any request."""
    assert response.status is not None, response.raw[:300]
    assert response.status < 500, response.raw[:500]
    assert b"Traceback" not in response.raw
    assert SECRET not in response.raw
    body, kind = response.body, response.headers.get("content-type", "")
    if head:
        assert body == b"", body[:200]
    elif kind.startswith("application/json"):
        answer = json.loads(body)
        if response.status >= 400:
            assert set(answer) == {"errorMessage"} and answer["errorMessage"], answer
    elif response.status == 200:
        assert body in live.served, body[:200]
    elif response.status == 206:
        assert any(body in content for content in live.served), body[:200]
    else:
        assert response.status in (304, 400, 416), response.raw[:300]
    assert len(live.store) == live.sessions, "a session was created (or lost) for garbage"


# --- strategies ----------------------------------------------------------------------------

header_text = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f"),
    max_size=120,
)
cookie_text = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E, blacklist_characters=";,"),
    max_size=600,
)
signed_looking = st.builds(
    "2|1:{}|10:{}|10:campus.sid|{}:{}|{}".format,
    st.integers(0, 2**32),
    st.integers(10**9, 10**10 - 1),
    st.integers(0, 99),
    st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-=", max_size=60),
    st.binary(min_size=32, max_size=32).map(bytes.hex),
)
json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
login_payload = st.fixed_dictionaries(
    {}, optional={"email": json_value | st.emails(), "password": json_value, "extra": json_value}
)


WRONG_LOGIN = json.dumps({"email": "ann@campus.test", "password": "wrong"}).encode()


def words(text: str) -> list[str]:
    return text.split()


# Path pieces: traversal spellings, names in and around the roots, routes, odd encodings.
PIECES = words(""".. . %2e%2e %2E%2e %2f %5c \\ ..%2f ..\\ %00 %252e%252e static dist private config
    secret.txt campus.env users.json static.bak distx leak.txt leak linked inner.txt index.html
    app.js img logo.svg a%20b c%20d.txt c%2520d.txt assets main.js api me login logout healthz
    ~ %ff % %zz""")
UP = words("..  %2e%2e  .%2e  %2E.  ..%2f..  ..%5c..  ..\\..  %252e%252e  ...")
OUTSIDE = words("""secret.txt private/inner.txt config/campus.env users.json etc/passwd
    static.bak/app.js distx/index.html leak.txt linked/inner.txt leak static/../secret.txt
    dist/leak""")
segment = st.sampled_from([*PIECES, "", "a b", ". ."]) | st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E, blacklist_characters="#?"), max_size=12
)
up, outside = st.sampled_from(UP), st.sampled_from(OUTSIDE)
separator = st.sampled_from(["/", "%2f", "%2F", "\\", "%5c", "//", "/./"])
url_path = (
    st.lists(segment, max_size=7).map(lambda parts: "/" + "/".join(parts))
    | st.tuples(st.lists(segment, max_size=3), st.lists(up, min_size=1, max_size=4), outside).map(
        lambda t: "/" + "/".join([*t[0], *t[1], t[2]])
    )
    | st.tuples(st.lists(up | segment, max_size=4), separator, outside).map(
        lambda t: "/" + t[1].join([*t[0], t[2]])
    )
)
HEADERS = words("""Origin Referer Host X-Forwarded-For X-Forwarded-Proto Cookie Content-Type
    Accept-Encoding If-None-Match If-Modified-Since Range Accept X-Real-Ip""")
FRAMING = {"content-length", "transfer-encoding", "connection", "expect"}  # kept well-framed
header_name = st.sampled_from(HEADERS) | st.from_regex(
    r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,20}", fullmatch=True
).filter(lambda name: name.lower() not in FRAMING)


def same_cookie(value: str, cookie: str) -> bool:
    """Whether *value* is *cookie*, quoted or not: Tornado quotes a value holding "=" (the
    base64 in a signed one), and a client may send it either way (deleting both quotes is an
    edit that leaves the very same cookie)."""

    def bare(text: str) -> str:
        return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text

    return bare(value) == bare(cookie)


def mutate(data: st.DataObject, value: str) -> str:
    """A few edits (replace, insert, delete, truncate) of a valid cookie value."""
    for _ in range(data.draw(st.integers(1, 3))):
        index = data.draw(st.integers(0, max(len(value) - 1, 0)))
        char = data.draw(
            st.characters(min_codepoint=0x21, max_codepoint=0x7E, blacklist_characters=";")
        )
        edit = data.draw(st.sampled_from(["replace", "insert", "delete", "truncate"]))
        if edit == "replace":
            value = value[:index] + char + value[index + 1 :]
        elif edit == "insert":
            value = value[:index] + char + value[index:]
        elif edit == "delete":
            value = value[:index] + value[index + 1 :]
        else:
            value = value[:index]
    return value


# --- properties ----------------------------------------------------------------------------


@PROPERTY
@given(value=cookie_text | signed_looking)
def test_any_cookie_value_is_anonymous(live: Live, value: str) -> None:
    cookie = [("Cookie", f"campus.sid={value}")]
    me = live.send(build("GET", "/api/me", cookie))
    assert_sane(live, me)
    same = same_cookie(value, live.cookie)
    assert me.status == (200 if same else 401), me.raw[:300]
    if not same:
        logout = live.send(build("POST", "/logout", cookie, b""))
        assert_sane(live, logout)
        assert logout.status == 200 and json.loads(logout.body) == {}


def test_the_cookie_quoted_or_bare_is_one_session(live: Live) -> None:
    assert live.cookie.startswith('"') and live.cookie.endswith('"')  # its base64 holds "="
    bare = live.cookie[1:-1]
    for value, status in [(live.cookie, 200), (bare, 200), ('"' + bare, 401), (bare + '"', 401)]:
        me = live.send(build("GET", "/api/me", [("Cookie", f"campus.sid={value}")]))
        assert (me.status, same_cookie(value, live.cookie)) == (status, status == 200), value


@PROPERTY
@given(data=st.data())
def test_a_tampered_cookie_is_anonymous(live: Live, data: st.DataObject) -> None:
    value = mutate(data, live.cookie)
    me = live.send(build("GET", "/api/me", [("Cookie", f"campus.sid={value}")]))
    assert_sane(live, me)
    assert me.status == (200 if same_cookie(value, live.cookie) else 401), (value, me.raw[:300])


@PROPERTY
@given(
    body=json_value.map(lambda v: json.dumps(v).encode())
    | login_payload.map(lambda v: json.dumps(v).encode())
    | st.binary(max_size=300)
)
def test_any_login_body_is_400_or_403(live: Live, body: bytes) -> None:
    response = live.send(build("POST", "/login", [("Content-Type", "application/json")], body))
    assert_sane(live, response)
    assert response.status in (400, 403), response.raw[:300]


@PROPERTY
@given(
    method=st.sampled_from(["GET", "HEAD", "POST"]),
    target=st.sampled_from(["/", "/app.js", "/deep/link", "/api/me", "/login", "/logout"]),
    headers=st.lists(st.tuples(header_name, header_text), max_size=6),
)
def test_any_headers(live: Live, method: str, target: str, headers: list[tuple[str, str]]) -> None:
    body = WRONG_LOGIN if method == "POST" else None
    response = live.send(build(method, target, headers, body))
    assert_sane(live, response, head=method == "HEAD")


@PROPERTY
@given(
    path=url_path, query=st.none() | header_text.map(lambda q: q.replace(" ", "+").replace("#", ""))
)
def test_any_path_serves_only_static_and_dist(live: Live, path: str, query: str | None) -> None:
    target = path if query is None else f"{path}?{query}"
    for method in ("GET", "HEAD"):
        response = live.send(build(method, target.encode("latin-1")))
        assert_sane(live, response, head=method == "HEAD")


def test_the_planted_secrets_are_where_a_traversal_would_look(live: Live) -> None:
    """The properties above mean something only if the site is built as intended."""
    assert (live.root / "secret.txt").read_bytes() == SECRET
    assert (live.root / "static" / "leak.txt").read_bytes() == SECRET  # a link out of static/
    assert (live.root / "static" / "linked" / "inner.txt").read_bytes() == SECRET
    found = [
        live.send(build("GET", path))
        for path in ("/app.js", "/img/logo.svg", "/a%20b/c%2520d.txt", "/assets/main.js", "/")
    ]
    assert [r.status for r in found] == [200] * 5
    assert {r.body for r in found} <= live.served
    for path in ("/leak.txt", "/linked/inner.txt", "/../secret.txt", "/%2e%2e/secret.txt"):
        response = live.send(build("GET", path))
        assert_sane(live, response)
        assert response.status in (400, 404), (path, response.raw[:200])
    assert live.send(build("GET", "/leak")).body in live.served  # dist/leak: the shell instead

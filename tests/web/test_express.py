"""The cut-over from the Express app, tested against the real thing.

tests/express/app.js is the Express app campus replaces (express-session + connect-redis from
the npm registry, installed by .ci/run). Each test logs in there, against the suite's own
redis-server, and carries that connect.sid cookie to campus, configured with the same Redis
and the Express secret(s).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import select
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
import redis
import redis.asyncio
from tornado.httpclient import AsyncHTTPClient, HTTPResponse
from tornado.httpserver import HTTPServer
from tornado.ioloop import IOLoop
from tornado.testing import bind_unused_port

from campus import cli
from campus.accounts.users import UserDirectory
from campus.config import Config, ExpressConfig, load
from campus.session.contract import ContractClock
from campus.session.stores.redis import RedisStore
from campus.web.app import make_app
from campus.web.express import ExpressSessions, express_email
from campus.web.services import Services, build_express, build_sessions
from tests.support.apps import (
    PASSWORD,
    Fetch,
    closing_store,
    make_config,
    make_store,
    session_cookie,
    user_index,
)
from tests.support.servers import REPO, Campus, RedisServer, production_env

APP_DIR = REPO / "tests" / "express"
OLD = "Shh, its a secret!"  # the article's secret: Express secrets need no minimum length
NEW = "the secret the Express app rotated to"
ANN = {"email": "ann@campus.test", "name": "Ann", "roles": ["student"]}
#: In the Express app, an admin; not in campus's users file.
MALLORY = {"email": "mallory@gone.example", "name": "Mallory", "roles": ["admin"]}
EXPRESS_PASSWORD = "express-password"  # app.js keeps plaintext passwords, as the article does


# --- the Express app ---------------------------------------------------------------------


class ExpressApp:
    """tests/express/app.js on a free port, storing its sessions in our redis-server."""

    def __init__(self, redis_url: str, *secrets: str) -> None:
        node = shutil.which("node")
        if node is None:
            pytest.fail("node is not on PATH: the Express cut-over tests run the real Express app")
        if not (APP_DIR / "node_modules").is_dir():
            pytest.fail(f"{APP_DIR}/node_modules is missing: run `npm ci` there (.ci/run does)")
        env = {**os.environ, "REDIS_URL": redis_url, "SECRETS": json.dumps(secrets), "PORT": "0"}
        self.process = subprocess.Popen(
            [node, "app.js"],
            cwd=APP_DIR,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.port = self._wait_for_port()

    def _wait_for_port(self, timeout: float = 15.0) -> int:
        assert self.process.stdout is not None
        output = b""
        while b"\n" not in output:
            ready, _, _ = select.select([self.process.stdout], [], [], timeout)
            chunk = os.read(self.process.stdout.fileno(), 4096) if ready else b""
            if not chunk:
                self.stop()
                raise RuntimeError(f"the Express app did not start: {output.decode()!r}")
            output += chunk
        line = output.split(b"\n", 1)[0].decode()
        if not line.startswith("listening on "):
            self.stop()
            raise RuntimeError(f"the Express app did not start: {output.decode()!r}")
        return int(line.removeprefix("listening on "))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def request(self, path: str, body: Any = None, cookie: str = "") -> tuple[int, Any, str | None]:
        """(status, JSON body, the connect.sid value it sets, URL-encoded as sent, or None)."""
        headers = {"Content-Type": "application/json"}
        if cookie:
            headers["Cookie"] = f"connect.sid={cookie}"
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            data=None if body is None else json.dumps(body).encode(),
            headers=headers,
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                status, sent, raw = response.status, response.headers, response.read()
        except urllib.error.HTTPError as exc:
            status, sent, raw = exc.code, exc.headers, exc.read()
        value = None
        for header in sent.get_all("Set-Cookie") or []:
            if header.startswith("connect.sid="):
                value = header.split(";", 1)[0].removeprefix("connect.sid=")
        return status, json.loads(raw), value

    def login(self, max_age: int | None = None, user: dict[str, Any] = ANN) -> str:
        """Log Ann (or *user*) in; the connect.sid cookie value. ``max_age``: a "remember me"
        cookie (ms)."""
        body: dict[str, Any] = {"email": user["email"], "password": EXPRESS_PASSWORD}
        if max_age is not None:
            body["maxAge"] = max_age
        status, answer, cookie = self.request("/login", body)
        assert (status, answer) == (200, {"user": user})
        assert cookie and cookie.startswith("s%3A")  # s:<id>.<signature>, URL-encoded
        return cookie

    def visitor_with_a_cart(self) -> str:
        """A visitor who put something in the cart without logging in: a record, no user."""
        status, _, cookie = self.request("/cart", {"cart": ["pen"]})
        assert status == 200 and cookie
        return cookie


def express_key(cookie: str) -> str:
    """The connect-redis key of a connect.sid value: sess:<id>."""
    return "sess:" + unquote(cookie)[2:].rpartition(".")[0]


@pytest.fixture(scope="module")
def express(redis_server: RedisServer) -> Iterator[ExpressApp]:
    """The Express app before the cut-over, signing with the article's secret."""
    app = ExpressApp(redis_server.url, OLD)
    yield app
    app.stop()


# --- campus in this process, with the cut-over on ----------------------------------------


@pytest.fixture
def express_secrets() -> tuple[str, ...]:
    return (OLD,)


@pytest.fixture
def config(
    users_file: Path,
    redis_server: RedisServer,
    redis_db: redis.Redis,
    express_secrets: tuple[str, ...],
    request: pytest.FixtureRequest,
) -> Config:
    marker = request.node.get_closest_marker("session_config")
    overrides = marker.kwargs if marker else {}
    base = make_config(users_file, "redis", redis_server.url, **overrides)
    return dataclasses.replace(base, express=ExpressConfig(secrets=express_secrets))


def cut_over_services(config: Config, clock: ContractClock) -> Services:
    store = make_store(config, clock)
    return Services(
        config=config,
        sessions=build_sessions(config, store, clock=clock),
        users=UserDirectory.load(config.users.file),
        express=build_express(config, store, clock=clock),
    )


@pytest.fixture
def services(config: Config, clock: ContractClock, io_loop: IOLoop) -> Iterator[Services]:
    yield from closing_store(cut_over_services(config, clock), io_loop)


@pytest.fixture
def fetch(fetch: Fetch) -> Fetch:
    """The suite's fetch, with either app's cookie: ``express=`` connect.sid, ``campus=`` ours."""

    async def do(path: str, express: str = "", campus: str = "", **options: Any) -> HTTPResponse:
        cookies = [f"connect.sid={express}"] if express else []
        cookies += [f"campus.sid={campus}"] if campus else []
        if cookies:
            options["headers"] = {**options.get("headers", {}), "Cookie": "; ".join(cookies)}
        return await fetch(path, **options)

    return do


def expires_express_cookie(response: HTTPResponse) -> bool:
    """Whether the response expires connect.sid: an empty value, Expires in the past, Path=/."""
    headers = [h for h in response.headers.get_list("Set-Cookie") if h.startswith("connect.sid=")]
    return len(headers) == 1 and is_expiry(headers[0])


def is_expiry(header: str) -> bool:
    value, *parts = (part.strip() for part in header.split(";"))
    attributes = {k.lower(): v for k, _, v in (part.partition("=") for part in parts)}
    expires = attributes.get("expires")
    return (
        value.partition("=")[2] in ("", '""')
        and attributes.get("path") == "/"
        and expires is not None
        and parsedate_to_datetime(expires).timestamp() < time.time()
    )


def commands(client: redis.Redis) -> dict[str, int]:
    stats = client.info("commandstats")
    return {
        name.removeprefix("cmdstat_"): int(value["calls"])
        for name, value in stats.items()
        if not name.startswith(("cmdstat_info", "cmdstat_config"))  # our own probes
    }


def campus_sid(services: Services, cookie: str) -> str:
    verified = services.sessions.signer.verify("campus.sid", cookie, max_age=10**9)
    assert verified is not None
    return verified[0]


# --- the day itself: a campus server process ---------------------------------------------


def campus_request(
    server: Campus, path: str, cookies: dict[str, str]
) -> tuple[int, Any, dict[str, str]]:
    """(status, JSON body, the cookies it sets by name) for a request with these cookies."""
    header = "; ".join(f"{name}={value}" for name, value in cookies.items())
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.port}{path}", headers={"Cookie": header} if header else {}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            status, sent, raw = response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        status, sent, raw = exc.code, exc.headers, exc.read()
    set_cookies = {}
    for line in sent.get_all("Set-Cookie") or []:
        name, _, rest = line.partition("=")
        set_cookies[name] = rest
    return status, json.loads(raw), set_cookies


def test_an_express_login_survives_the_cut_over(
    express: ExpressApp,
    users_file: Path,
    redis_server: RedisServer,
    redis_db: redis.Redis,
    tmp_path: Path,
) -> None:
    cookie = express.login()
    assert express.request("/api/me", cookie=cookie)[:2] == (200, {"user": ANN})
    key = express_key(cookie)
    assert redis_db.exists(key)
    # The article's secret has a comma in it, so it goes in the file, not in the environment.
    config_file = tmp_path / "production.toml"
    config_file.write_text(
        '[session]\nstore = "redis"\nsecure = true\n[express]\nsecrets = ["Shh, its a secret!"]\n'
    )
    env = production_env(redis_server.url, users_file, CAMPUS_CONFIG=str(config_file))
    server = Campus(env)
    try:
        status, body, sets = campus_request(server, "/api/me", {"connect.sid": cookie})
        assert (status, body) == (200, {"user": ANN})
        assert set(sets) == {"campus.sid", "connect.sid"}
        assert is_expiry("connect.sid=" + sets["connect.sid"])
        assert not redis_db.exists(key)  # carried over once: the Express record is gone
        campus_cookie = sets["campus.sid"].split(";")[0].strip('"')
        assert len(redis_db.keys("campus:*")) == 2  # the campus session and Ann's index

        # From now on campus's own cookie is the session.
        assert campus_request(server, "/api/me", {"campus.sid": campus_cookie})[:2] == (
            200,
            {"user": ANN},
        )
        # The same connect.sid a second time (a copy, a replay): nobody.
        status, body, sets = campus_request(server, "/api/me", {"connect.sid": cookie})
        assert (status, body) == (401, {"errorMessage": "Not logged in"})
        assert "campus.sid" not in sets
        # And the Express app, were it still running, no longer knows it either.
        assert express.request("/api/me", cookie=cookie)[0] == 401

        # Only users of the users file are carried over: an Express admin who is not in it,
        # and a visitor with no user at all, are nobody; their records are gone all the same.
        for other in (express.login(user=MALLORY), express.visitor_with_a_cart()):
            status, body, sets = campus_request(server, "/api/me", {"connect.sid": other})
            assert (status, body) == (401, {"errorMessage": "Not logged in"})
            assert set(sets) == {"connect.sid"} and is_expiry("connect.sid=" + sets["connect.sid"])
            assert not redis_db.exists(express_key(other))
        assert len(redis_db.keys("campus:*")) == 2  # still Ann's session and index alone
    finally:
        log = server.stop()
    assert "Express cut-over on: connect.sid cookies carry their sess:* sessions over" in log
    assert "Traceback" not in log


def test_the_express_secrets_with_the_memory_store_refuse_to_start(
    users_file: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [name for name in os.environ if name.startswith("CAMPUS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("CAMPUS_EXPRESS_SECRETS", NEW)
    monkeypatch.setenv("CAMPUS_USERS_FILE", str(users_file))
    assert cli.main(["--config", str(REPO / "config" / "development.toml"), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("campus: CAMPUS_EXPRESS_SECRETS: ")
    assert 'needs session.store = "redis"' in err and NEW not in err
    config = load(environ={"CAMPUS_EXPRESS_SECRETS": f"{NEW},second", "CAMPUS_STORE": "redis"})
    assert config.express.secrets == (NEW, "second")


# --- what is carried over, and how -------------------------------------------------------


@pytest.mark.gen_test
async def test_the_carried_session_is_like_a_login(
    express: ExpressApp,
    fetch: Fetch,
    services: Services,
    clock: ContractClock,
    redis_db: redis.Redis,
) -> None:
    cookie = express.login()
    assert express.request("/cart", {"cart": ["pen", 2]}, cookie=cookie)[0] == 200
    response = await fetch("/api/me", express=cookie)
    assert json.loads(response.body) == {"user": ANN}
    assert expires_express_cookie(response)
    campus_cookie = session_cookie(response)
    assert campus_cookie

    store = services.sessions.store
    assert isinstance(store, RedisStore)
    sid = campus_sid(services, campus_cookie)
    assert sid != unquote(cookie)[2:].partition(".")[0]  # a new id, never the Express one
    record = await store.load(sid, touch=None)
    assert record is not None
    data = record.decoded()
    # Like a login, the carry-over offers device binding: one registration challenge (hashed).
    offered = [key for key in data if key.startswith("device_challenge:")]
    assert len(offered) == 1 and "Secure-Session-Registration" in response.headers
    # The user's key, never a copy of the record; the cart comes along (not `cookie`); the
    # sign-in facts of this request, as a login records them, for "Your sessions".
    carried = {key: value for key, value in data.items() if key not in offered}
    assert carried.keys() == {"user", "cart", "signin"}
    assert (carried["user"], carried["cart"]) == ("ann@campus.test", ["pen", 2])
    assert data["signin"]["address"] == "127.0.0.1" and abs(data["signin"]["at"] - clock()) < 5
    # Its absolute deadline counts from the carry-over, as if Ann had logged in just now.
    absolute = services.config.session.absolute_timeout
    assert abs(record.expires - (clock() + absolute)) <= 2
    assert record.user == "ann@campus.test"
    # Ann's index holds it: "log out everywhere" reaches carried sessions too.
    assert await user_index(store).delete_user("ann@campus.test") == 1
    assert (await fetch("/api/me", campus=campus_cookie)).code == 401


@pytest.mark.gen_test
async def test_a_remember_me_session_carries_over_until_it_expires(
    express: ExpressApp, fetch: Fetch, clock: ContractClock, redis_db: redis.Redis
) -> None:
    alive = express.login(max_age=60_000)  # cookie.expires one minute ahead
    response = await fetch("/api/me", express=alive)
    assert json.loads(response.body) == {"user": ANN}

    expired = express.login(max_age=60_000)
    clock.advance(61)  # the record's cookie.expires has passed; Redis has not dropped it yet
    assert redis_db.exists(express_key(expired))
    response = await fetch("/api/me", express=expired)
    assert response.code == 401 and session_cookie(response) is None
    assert expires_express_cookie(response)
    assert not redis_db.exists(express_key(expired))


@pytest.mark.gen_test
async def test_an_anonymous_express_session_is_dropped_without_a_campus_session(
    express: ExpressApp, fetch: Fetch, redis_db: redis.Redis
) -> None:
    status, _, cookie = express.request("/api/me")  # saveUninitialized: a record all the same
    assert status == 401 and cookie and redis_db.exists(express_key(cookie))
    response = await fetch("/api/me", express=cookie)
    assert response.code == 401
    assert session_cookie(response) is None  # nothing to keep: no campus session
    assert expires_express_cookie(response)
    assert not redis_db.exists(express_key(cookie))


@pytest.mark.gen_test
async def test_only_users_of_the_users_file_are_carried_over(
    express: ExpressApp, fetch: Fetch, services: Services, redis_db: redis.Redis
) -> None:
    """An Express admin who is not in the users file, a visitor with a cart and no user, a
    user without an email: none is anybody on campus, and each record is deleted."""
    mallory = express.login(user=MALLORY)
    cart_only = express.visitor_with_a_cart()
    no_email = express.login()
    redis_db.set(
        express_key(no_email), json.dumps({"cookie": {"expires": None}, "user": {"name": "Ann"}})
    )
    for cookie in (mallory, cart_only, no_email):
        response = await fetch("/api/me", express=cookie)
        assert response.code == 401, cookie
        assert json.loads(response.body) == {"errorMessage": "Not logged in"}
        assert session_cookie(response) is None and expires_express_cookie(response)
        assert not redis_db.exists(express_key(cookie))
        assert (await fetch("/api/sessions", express=cookie)).code == 401
    assert await user_index(services.sessions.store).count() == 0


@pytest.mark.gen_test
async def test_nothing_of_the_express_record_reaches_api_me(
    express: ExpressApp, fetch: Fetch, services: Services, redis_db: redis.Redis
) -> None:
    """The carried session refers to the users file's user, found by the email normalised as
    at login; the name, roles (and anything else) of the Express copy are never answered."""
    cookie = express.login()
    forged = {"email": "  ANN@Campus.TEST ", "name": "Evil", "roles": ["admin"], "password": "x"}
    redis_db.set(express_key(cookie), json.dumps({"cookie": {"expires": None}, "user": forged}))
    response = await fetch("/api/me", express=cookie)
    assert json.loads(response.body) == {"user": ANN}
    campus_cookie = session_cookie(response)
    assert campus_cookie
    assert json.loads((await fetch("/api/me", campus=campus_cookie)).body) == {"user": ANN}
    sessions = json.loads((await fetch("/api/sessions", campus=campus_cookie)).body)["sessions"]
    assert len(sessions) == 1 and sessions[0]["current"]  # "Your sessions" lists it
    assert (
        await user_index(services.sessions.store).delete_user("ann@campus.test") == 1
    )  # and revokes it


# --- what is anonymous -------------------------------------------------------------------


def tampered(cookie: str, how: str) -> str:
    text = unquote(cookie)
    sid, _, signature = text[2:].rpartition(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    return {
        "signature-flipped": f"s:{sid}.{flipped}",
        "signature-cut": f"s:{sid}.{signature[:-1]}",
        "signature-missing": f"s:{sid}",
        "unsigned": sid,
        "other-id": f"s:{sid[:-1]}{'x' if sid[-1] != 'x' else 'y'}.{signature}",
        "padded-signature": f"s:{sid}.{signature}=",
    }[how]


@pytest.mark.parametrize(
    "how",
    [
        "signature-flipped",
        "signature-cut",
        "signature-missing",
        "unsigned",
        "other-id",
        "padded-signature",
    ],
)
@pytest.mark.gen_test
async def test_a_bad_signature_is_anonymous_and_touches_nothing(
    express: ExpressApp, fetch: Fetch, redis_db: redis.Redis, how: str
) -> None:
    cookie = express.login()
    redis_db.config_resetstat()
    response = await fetch("/api/me", express=tampered(cookie, how))
    assert response.code == 401
    assert commands(redis_db) == {}  # no Redis command for a cookie that does not verify
    assert not response.headers.get_list("Set-Cookie")  # and the cookie is left alone
    assert redis_db.exists(express_key(cookie))
    assert (await fetch("/api/me", express=cookie)).code == 200  # the real one still works


@pytest.mark.parametrize("express_secrets", [(NEW,)])
@pytest.mark.gen_test
async def test_a_cookie_signed_with_another_secret_is_anonymous(
    express: ExpressApp, fetch: Fetch, redis_db: redis.Redis, express_secrets: tuple[str, ...]
) -> None:
    cookie = express.login()  # signed with OLD, and campus knows only NEW
    response = await fetch("/api/me", express=cookie)
    assert response.code == 401 and not response.headers.get_list("Set-Cookie")
    assert redis_db.exists(express_key(cookie))  # fixing the config carries it over later


@pytest.mark.gen_test
async def test_a_missing_record_is_anonymous(
    express: ExpressApp, fetch: Fetch, redis_db: redis.Redis
) -> None:
    cookie = express.login()
    redis_db.delete(express_key(cookie))  # e.g. expired in Redis, or logged out on Express
    response = await fetch("/api/me", express=cookie)
    assert response.code == 401 and session_cookie(response) is None
    assert expires_express_cookie(response)


@pytest.mark.parametrize(
    "record",
    [
        b"not json",
        b"[1, 2]",
        b'{"user": {"email": "ann@campus.test"}}',  # no cookie object
        b'{"cookie": {"expires": "next tuesday"}, "user": {"email": "ann@campus.test"}}',
        b'{"cookie": {"expires": 12}, "user": {"email": "ann@campus.test"}}',
        b'{"cookie": {}, "user": {"email": "ann@campus.test", "n": 1e999}}',
    ],
)
@pytest.mark.gen_test
async def test_a_malformed_record_is_anonymous(
    express: ExpressApp, fetch: Fetch, redis_db: redis.Redis, record: bytes
) -> None:
    cookie = express.login()
    redis_db.set(express_key(cookie), record)
    response = await fetch("/api/me", express=cookie)
    assert response.code == 401 and session_cookie(response) is None


# --- rotation, races, and the other routes -----------------------------------------------


@pytest.mark.parametrize("express_secrets", [(NEW, OLD), (OLD, NEW)])
@pytest.mark.gen_test
async def test_every_express_secret_verifies(
    express: ExpressApp, redis_server: RedisServer, fetch: Fetch, express_secrets: tuple[str, ...]
) -> None:
    before = express.login()  # issued before the Express app rotated its secret
    rotated = ExpressApp(redis_server.url, NEW, OLD)
    try:
        assert rotated.request("/api/me", cookie=before)[0] == 200  # Express's own rotation
        after = rotated.login()  # signed with NEW
    finally:
        rotated.stop()
    assert before != after
    for cookie in (before, after):
        response = await fetch("/api/me", express=cookie)
        assert json.loads(response.body) == {"user": ANN}


@pytest.mark.gen_test
async def test_two_requests_racing_with_one_cookie_carry_it_over_once(
    express: ExpressApp, fetch: Fetch, services: Services
) -> None:
    cookie = express.login()
    responses = await asyncio.gather(*(fetch("/api/me", express=cookie) for _ in range(4)))
    assert sorted(r.code for r in responses) == [200, 401, 401, 401]
    assert await user_index(services.sessions.store).count() == 1


@pytest.mark.gen_test
async def test_requests_without_connect_sid_cost_no_redis_command(
    express: ExpressApp, fetch: Fetch, redis_db: redis.Redis
) -> None:
    redis_db.config_resetstat()
    assert (await fetch("/api/me")).code == 401
    assert commands(redis_db) == {}
    response = await fetch(
        "/login",
        method="POST",
        body=json.dumps({"email": "bob@campus.test", "password": PASSWORD}),
    )
    campus_cookie = session_cookie(response)
    assert campus_cookie
    cookie = express.login()
    await fetch("/api/me", campus=campus_cookie)  # opens the store's read connection
    redis_db.config_resetstat()
    assert (await fetch("/api/me", campus=campus_cookie)).code == 200
    assert commands(redis_db) == {"getex": 1}
    # Someone logged in on campus keeps that session; the Express record is not touched.
    redis_db.config_resetstat()
    response = await fetch("/api/me", campus=campus_cookie, express=cookie)
    assert json.loads(response.body)["user"]["email"] == "bob@campus.test"
    assert commands(redis_db) == {"getex": 1}
    assert redis_db.exists(express_key(cookie))


@pytest.mark.gen_test
async def test_logging_in_on_campus_with_an_express_cookie_keeps_one_session(
    express: ExpressApp, fetch: Fetch, services: Services, redis_db: redis.Redis
) -> None:
    cookie = express.login()
    response = await fetch(
        "/login",
        method="POST",
        express=cookie,
        body=json.dumps({"email": "bob@campus.test", "password": PASSWORD}),
    )
    assert json.loads(response.body)["user"]["email"] == "bob@campus.test"
    assert expires_express_cookie(response)
    assert not redis_db.exists(express_key(cookie))
    assert await user_index(services.sessions.store).count() == 1  # Bob's; Ann's carried one went


@pytest.mark.session_config(save_uninitialized=True)
@pytest.mark.gen_test
async def test_an_anonymous_campus_session_gives_way_to_the_express_login(
    express: ExpressApp, fetch: Fetch, services: Services
) -> None:
    first = session_cookie(await fetch("/api/me"))  # stored although empty
    assert first and await user_index(services.sessions.store).count() == 1
    cookie = express.login()
    response = await fetch("/api/me", campus=first, express=cookie)
    assert json.loads(response.body) == {"user": ANN}
    second = session_cookie(response)
    assert second and campus_sid(services, second) != campus_sid(services, first)
    assert await user_index(services.sessions.store).count() == 1  # the anonymous one is gone


@pytest.mark.gen_test
async def test_logout_ends_the_express_session_too(
    express: ExpressApp, fetch: Fetch, redis_db: redis.Redis, services: Services
) -> None:
    cookie = express.login()
    response = await fetch("/logout", express=cookie)
    assert response.code == 200 and json.loads(response.body) == {}
    assert expires_express_cookie(response)
    assert not redis_db.exists(express_key(cookie))
    assert (await fetch("/api/me", express=cookie)).code == 401
    assert await user_index(services.sessions.store).count() == 0


@pytest.fixture
def lone_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, to stop in the middle."""
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def outage_services(lone_redis: RedisServer, users_file: Path, clock: ContractClock) -> Services:
    config = make_config(users_file, "redis", lone_redis.url)
    express = ExpressConfig(secrets=(OLD,))
    return cut_over_services(dataclasses.replace(config, express=express), clock)


@pytest.mark.slow
@pytest.mark.gen_test
async def test_a_store_outage_during_the_carry_over_is_a_503_then_it_works(
    lone_redis: RedisServer, outage_services: Services
) -> None:
    # campus on lone_redis; cookies made by a real Express app against the same server.
    app = ExpressApp(lone_redis.url, OLD)
    try:
        cookie = app.login()
    finally:
        app.stop()
    http_client = AsyncHTTPClient()
    sock, port = bind_unused_port()
    server = HTTPServer(make_app(outage_services, root=str(REPO)))
    server.add_sockets([sock])
    url = f"http://127.0.0.1:{port}"
    headers = {"Cookie": f"connect.sid={cookie}"}
    record = lone_redis.client().get(express_key(cookie))
    assert record
    try:
        lone_redis.stop()
        response = await http_client.fetch(url + "/api/me", headers=headers, raise_error=False)
        assert response.code == 503 and response.headers["Retry-After"]
        assert json.loads(response.body) == {"errorMessage": "Session store unavailable"}
        assert not response.headers.get_list("Set-Cookie")  # the cookie is kept for later
        response = await http_client.fetch(url + "/logout", headers=headers, raise_error=False)
        assert response.code == 500
        assert json.loads(response.body) == {"errorMessage": "Could not log out."}
        lone_redis.start()
        lone_redis.client().set(express_key(cookie), record)  # as a persistent Redis keeps it
        response = await http_client.fetch(url + "/api/me", headers=headers, raise_error=False)
        assert json.loads(response.body) == {"user": ANN}
    finally:
        server.stop()
        await outage_services.sessions.store.close()


# --- the cookie and the record, without the Express app ----------------------------------


def make_sessions(clock: ContractClock | None = None) -> ExpressSessions:
    client = redis.asyncio.Redis(port=1)  # never used: verify() and fields() do no I/O
    return ExpressSessions(client, secrets=(NEW, OLD), clock=clock or ContractClock())


@pytest.mark.parametrize(
    "value",
    [None, "", "s:", "s:.", "s%3A.", "s:abc", "s:abc.", "%", "s:" + "a" * 2000 + ".sig", "s:é.ü"],
)
def test_garbage_cookies_do_not_verify(value: str | None) -> None:
    assert make_sessions().verify(value) is None


def test_only_the_email_of_the_express_user_is_read() -> None:
    raw = json.dumps({"cookie": {"expires": None}, "user": {**ANN, "password": "x"}})
    fields = make_sessions().fields(raw)
    assert fields is not None and express_email(fields) == "ann@campus.test"
    too_long = {"email": "a" * 250 + "@b.cd"}
    for user in (None, "ann@campus.test", {"name": "Ann"}, {"email": 5}, ["ann"], too_long):
        assert express_email({"user": user}) is None


def test_expiry_is_express_sessions_own_test() -> None:
    clock = ContractClock()
    sessions = make_sessions(clock)
    at = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() + 30))
    raw = json.dumps({"cookie": {"expires": at}, "user": ANN})
    assert sessions.fields(raw) == {"user": ANN}
    clock.advance(31)
    assert sessions.fields(raw) is None

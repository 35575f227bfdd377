"""Cross-site request forgery: a POST from a foreign page is 403, same-origin and curl work.

The page behind a request is its ``Origin`` header, or without one its ``Referer``; ours is
``scheme://Host`` (the scheme behind a trusted proxy from ``X-Forwarded-Proto``), plus
``server.allowed_origins``.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
from tornado.httpclient import HTTPResponse
from tornado.httputil import HTTPHeaders

from campus.config import Config
from campus.session.stores.memory import MemoryStore
from campus.web.handlers.origin import is_cross_origin, origin_of
from campus.web.services import Services
from tests.support.apps import PASSWORD, Fetch, session_cookie

OWN = "http://app.test:8000"
REFUSED = {"errorMessage": "Cross-origin request refused"}


@pytest.mark.parametrize(
    "origin, referer, foreign",
    [
        (None, None, False),  # curl, a server: no page behind it
        ("", "", False),  # browsers omit these rather than send them empty
        (OWN, None, False),
        ("HTTP://App.Test:8000", None, False),
        (OWN, "https://evil.test/", False),  # Origin wins over Referer
        (None, OWN + "/login?next=/", False),
        (None, OWN, False),
        ("null", None, True),  # a sandboxed frame, a data: URL, a cross-site redirect
        ("null", OWN + "/", True),
        ("https://app.test:8000", None, True),  # another scheme is another origin
        ("http://app.test", None, True),
        ("http://app.test:8001", None, True),
        ("http://app.test:8000.evil.test", None, True),
        ("http://app.test:8000@evil.test", None, True),
        ("http://evil.test@app.test:8000", None, True),  # no user info in an origin
        ("http://evil.test#@app.test:8000", None, True),
        (OWN + "/", None, True),  # an Origin header is only an origin
        (f"{OWN}, https://evil.test", None, True),  # two Origin headers
        ("http://app.test:99999", None, True),
        ("http://[::1", None, True),
        ("app.test:8000", None, True),
        ("ftp://app.test:8000", None, True),
        (None, "https://evil.test/" + OWN, True),
        (None, "/relative/path", True),
        (None, "garbage", True),
    ],
)
def test_is_cross_origin(origin: str | None, referer: str | None, foreign: bool) -> None:
    assert is_cross_origin(origin, referer, OWN, ()) is foreign


def test_allowed_origins_and_default_ports() -> None:
    allowed = ("https://admin.test:443", "http://[::1]:3000")
    assert not is_cross_origin("https://admin.test", None, OWN, allowed)
    assert not is_cross_origin("http://[::1]:3000", None, OWN, allowed)
    assert is_cross_origin("http://admin.test", None, OWN, allowed)
    assert origin_of("http://example.test:80") == "http://example.test"
    assert origin_of("https://example.test:443") == "https://example.test"
    assert origin_of("https://example.test:80") == "https://example.test:80"
    assert is_cross_origin("http://x.test", None, None, ())  # no own origin: nothing matches


# --- through the app ---------------------------------------------------------------------


def login_body(email: str = "ann@campus.test", password: str = PASSWORD) -> str:
    return json.dumps({"email": email, "password": password})


async def login(fetch: Fetch, **headers: str) -> HTTPResponse:
    return await fetch("/login", method="POST", body=login_body(), headers=headers)


def refused(response: HTTPResponse) -> None:
    assert response.code == 403, (response.code, response.body)
    assert json.loads(response.body) == REFUSED
    assert response.headers["Cache-Control"] == "no-store"
    assert session_cookie(response) is None


@pytest.mark.gen_test
async def test_same_origin_and_headerless_logins_work(fetch: Fetch, base_url: str) -> None:
    assert (await login(fetch)).code == 200
    assert (await login(fetch, Origin=base_url)).code == 200
    assert (await login(fetch, Referer=base_url + "/login")).code == 200


@pytest.mark.gen_test
async def test_foreign_logins_are_refused_before_anything_happens(
    fetch: Fetch, base_url: str, services: Services
) -> None:
    host, port = base_url.removeprefix("http://").rsplit(":", 1)
    alias = "127.0.0.1" if host == "localhost" else "localhost"
    for headers in (
        {"Origin": "https://evil.test"},
        {"Origin": "null"},
        {"Origin": base_url.replace("http:", "https:")},
        {"Origin": f"http://{alias}:{port}"},  # the same server by another name
        {"Referer": "https://evil.test/" + base_url},
        {"Origin": "https://evil.test", "Referer": base_url + "/"},
    ):
        refused(await login(fetch, **headers))
    store = services.sessions.store
    assert isinstance(store, MemoryStore)
    assert len(store) == 0 and len(store._attempts) == 0  # no session, not even a count


@pytest.mark.gen_test
async def test_two_origin_headers_are_refused(fetch: Fetch, base_url: str) -> None:
    headers = HTTPHeaders()
    headers.add("Origin", base_url)
    headers.add("Origin", "https://evil.test")
    refused(await fetch("/login", method="POST", body=login_body(), headers=headers))


@pytest.mark.gen_test
async def test_a_forged_logout_leaves_the_session_alone(fetch: Fetch, base_url: str) -> None:
    cookie = session_cookie(await login(fetch))
    jar = {"Cookie": f"campus.sid={cookie}"}
    forged = await fetch(
        "/logout", method="POST", body=b"", headers={**jar, "Origin": "https://evil.test"}
    )
    refused(forged)
    assert (await fetch("/api/me", headers=jar)).code == 200
    response = await fetch("/logout", method="POST", body=b"", headers={**jar, "Origin": base_url})
    assert response.code == 200
    assert (await fetch("/api/me", headers=jar)).code == 401


@pytest.mark.gen_test
async def test_every_unsafe_method_on_the_api_is_checked(fetch: Fetch) -> None:
    evil = {"Origin": "https://evil.test"}
    for method, path in [("PUT", "/login"), ("DELETE", "/logout"), ("POST", "/api/anything")]:
        body = None if method == "DELETE" else b"{}"
        refused(await fetch(path, method=method, body=body, headers=evil))
    # safe methods are not: reading is no forgery, and GET /logout is SameSite's job
    assert (await fetch("/api/me", headers=evil)).code == 401
    assert (await fetch("/logout", headers=evil)).code == 200


@pytest.mark.gen_test
async def test_the_frontend_answers_405_to_unsafe_methods_whatever_the_origin(
    fetch: Fetch, base_url: str
) -> None:
    for headers in ({}, {"Origin": "https://evil.test"}, {"Origin": base_url}):
        response = await fetch("/", method="POST", body=b"x", headers=headers)
        assert response.code == 405, headers
        assert "errorMessage" in json.loads(response.body)


@pytest.mark.gen_test
async def test_a_big_foreign_body_is_refused_without_being_read(fetch: Fetch) -> None:
    body = b'{"email": "' + b"x" * 200_000 + b'"}'
    refused(await fetch("/login", method="POST", body=body, headers={"Origin": "https://e.test"}))


@pytest.mark.gen_test
async def test_the_default_port_is_the_same_origin(fetch: Fetch) -> None:
    headers = {"Host": "app.test", "Origin": "http://app.test:80"}
    assert (await login(fetch, **headers)).code == 200


class TestAllowedOrigins:
    @pytest.fixture
    def config(self, config: Config) -> Config:
        server = dataclasses.replace(config.server, allowed_origins=("https://admin.campus.test",))
        return dataclasses.replace(config, server=server)

    @pytest.mark.gen_test
    async def test_a_configured_origin_may_post(self, fetch: Fetch) -> None:
        assert (await login(fetch, Origin="https://admin.campus.test")).code == 200
        assert (await login(fetch, Referer="https://admin.campus.test:443/x")).code == 200
        refused(await login(fetch, Origin="http://admin.campus.test"))
        refused(await login(fetch, Origin="https://campus.test"))


class TestBehindATrustedProxy:
    @pytest.fixture
    def config(self, config: Config) -> Config:
        server = dataclasses.replace(config.server, trust_proxy=True)
        return dataclasses.replace(config, server=server)

    @pytest.mark.gen_test
    async def test_the_scheme_is_the_proxys(self, fetch: Fetch) -> None:
        tls = {"Host": "campus.test", "X-Forwarded-Proto": "https"}
        assert (await login(fetch, Origin="https://campus.test", **tls)).code == 200
        refused(await login(fetch, Origin="http://campus.test", **tls))
        assert (await login(fetch, Origin="http://campus.test", Host="campus.test")).code == 200


@pytest.mark.gen_test
async def test_without_trust_proxy_forwarded_proto_is_ignored(fetch: Fetch) -> None:
    tls = {"Host": "campus.test", "X-Forwarded-Proto": "https"}
    refused(await login(fetch, Origin="https://campus.test", **tls))
    assert (await login(fetch, Origin="http://campus.test", **tls)).code == 200

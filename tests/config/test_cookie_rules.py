"""The cookie rules end to end: what the server refuses to start with, what it sets, and
secret rotation across restarts ("new,old" keeps sessions; dropping old ends them)."""

from __future__ import annotations

import dataclasses
import http.client
import json
from pathlib import Path
from typing import Any

import pytest
import redis

from campus.config import Config
from campus.session import CookieSigner
from tests.support.apps import PASSWORD
from tests.support.servers import Campus, RedisServer, campus_env, free_port, run_campus, wait_for

ANN = {"email": "ann@campus.test", "password": PASSWORD}
SECRET_A = "a-secret-of-the-old-days-" + "a" * 24
SECRET_B = "b-secret-of-the-new-days-" + "b" * 24


def call(
    port: int, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, list[str], bytes]:
    """One request; the status, every Set-Cookie header and the body."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        data = None if body is None else json.dumps(body).encode()
        connection.request(method, path, body=data, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.headers.get_all("Set-Cookie") or [], response.read()
    finally:
        connection.close()


def attributes(set_cookie: str) -> dict[str, str]:
    _, *parts = set_cookie.split(";")
    return {k.strip().lower(): v for k, _, v in (p.partition("=") for p in parts)}


# --- refused at startup ------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    "settings, says",
    [
        ({"CAMPUS_SESSION_COOKIE_NAME": "__Host-sid"}, "__Host- cookie name needs"),
        (
            {"CAMPUS_SESSION_COOKIE_NAME": "__Host-sid", "CAMPUS_SESSION_SECURE": "false"},
            "__Host- cookie name needs",
        ),
        (
            {
                "CAMPUS_SESSION_COOKIE_NAME": "__Host-sid",
                "CAMPUS_SESSION_SECURE": "true",
                "CAMPUS_SESSION_DOMAIN": "campus.test",
            },
            "__Host- cookie cannot have a domain",
        ),
        ({"CAMPUS_SESSION_COOKIE_NAME": "__Secure-sid"}, "__Secure- cookie name needs"),
        ({"CAMPUS_SESSION_SAME_SITE": "none"}, "SameSite=None needs session.secure = true"),
        (
            {"CAMPUS_SESSION_SAME_SITE": "None", "CAMPUS_SESSION_SECURE": "false"},
            "SameSite=None needs session.secure = true",
        ),
    ],
    ids=["host-auto", "host-insecure", "host-domain", "secure-prefix", "none-auto", "none-off"],
)
def test_the_server_refuses_to_start(settings: dict[str, str], says: str) -> None:
    result = run_campus(campus_env(**settings), "--port", str(free_port()))
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_a_config_file_breaking_the_rules_is_named(tmp_path: Path) -> None:
    config = tmp_path / "development.toml"
    config.write_text('[session]\nsame_site = "none"\n')
    result = run_campus(campus_env(), "--config", str(config))
    assert result.returncode != 0
    assert f"{config}: session.same_site: SameSite=None" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


# --- accepted and set as configured ------------------------------------------------------


@pytest.mark.slow
def test_a_host_prefixed_secure_cookie_works(users_file: Path) -> None:
    server = Campus(
        campus_env(
            CAMPUS_USERS_FILE=str(users_file),
            CAMPUS_SESSION_COOKIE_NAME="__Host-sid",
            CAMPUS_SESSION_SECURE="true",
            CAMPUS_SESSION_SAME_SITE="none",
        )
    )
    try:
        status, cookies, _ = call(server.port, "POST", "/login", ANN)
        assert status == 200
        device, cookie = sorted(cookies)  # "__Host-sid.device=..." sorts first
        assert cookie.startswith("__Host-sid=") and device.startswith("__Host-sid.device=")
        device_attrs = attributes(device)  # a valid __Host- cookie too
        assert device_attrs["path"] == "/" and "domain" not in device_attrs
        assert {"secure", "httponly"} <= set(device_attrs)
        assert device_attrs["samesite"] == "Strict"
        attrs = attributes(cookie)
        assert attrs["path"] == "/" and "domain" not in attrs
        assert {"secure", "httponly"} <= set(attrs) and attrs["samesite"] == "None"
        value = cookie.split(";", 1)[0]
        assert call(server.port, "GET", "/api/me", headers={"Cookie": value})[0] == 200
        status, cleared, _ = call(server.port, "GET", "/logout", headers={"Cookie": value})
        assert status == 200 and "secure" in attributes(cleared[0])
    finally:
        server.stop()


class TestSecureBehindAProxy:
    """``secure = "auto"``: Secure follows the scheme; behind a trusted proxy, its header."""

    @pytest.fixture
    def config(self, config: Config) -> Config:
        server = dataclasses.replace(config.server, trust_proxy=True)
        return dataclasses.replace(config, server=server)

    @pytest.mark.gen_test
    @pytest.mark.parametrize(
        "proto, secure",
        [("https", True), ("HTTPS", True), ("http", False), ("https, http", False), (None, False)],
    )
    async def test_forwarded_proto_decides(
        self, http_client: Any, base_url: str, proto: str | None, secure: bool
    ) -> None:
        headers = {} if proto is None else {"X-Forwarded-Proto": proto}
        response = await http_client.fetch(
            base_url + "/login", method="POST", body=json.dumps(ANN), headers=headers
        )
        device, cookie = sorted(response.headers.get_list("Set-Cookie"))  # .device first
        assert ("secure" in attributes(cookie)) is secure
        assert ("secure" in attributes(device)) is secure  # the device cookie follows it
        jar = {**headers, "Cookie": cookie.split(";", 1)[0]}
        logout = await http_client.fetch(base_url + "/logout", headers=jar)
        (cleared,) = logout.headers.get_list("Set-Cookie")
        assert ("secure" in attributes(cleared)) is secure  # cleared with the same attributes


# --- secret rotation ---------------------------------------------------------------------


def signed_with(secret: str, value: str) -> bool:
    return CookieSigner([secret]).verify("campus.sid", value, max_age=3600) is not None


@pytest.mark.slow
def test_secret_rotation_across_restarts(
    users_file: Path, redis_server: RedisServer, redis_db: redis.Redis
) -> None:
    def start(secrets: str) -> Campus:
        return Campus(
            campus_env(
                CAMPUS_ENV="production",
                CAMPUS_SESSION_SECRET=secrets,
                CAMPUS_REDIS_URL=redis_server.url,
                CAMPUS_USERS_FILE=str(users_file),
                CAMPUS_SESSION_SECURE="false",  # plain http in this test
                CAMPUS_SESSION_IDLE_TIMEOUT="20",  # a rolling cookie is re-sent after 2 s
            )
        )

    def me(server: Campus, cookie: str) -> int:
        server.cookie = cookie
        return server.request("/api/me")[0]

    server = start(SECRET_A)
    try:
        assert server.request("/login", ANN)[0] == 200
        old = server.cookie
        assert signed_with(SECRET_A, old)
    finally:
        server.stop()

    server = start(f"{SECRET_B},{SECRET_A}")  # the new secret signs, the old still verifies
    try:

        def re_sent() -> bool:
            assert me(server, old) == 200  # the old secret still verifies, every time
            return server.cookie != old

        wait_for(re_sent, "the rolling cookie to be re-sent (2 s after it was)", 10, interval=0.2)
        renewed = server.cookie  # an active session's cookie moves to the new secret
        assert renewed != old and signed_with(SECRET_B, renewed)
        server.cookie = ""
        assert server.request("/login", ANN)[0] == 200
        fresh = server.cookie
        assert signed_with(SECRET_B, fresh) and not signed_with(SECRET_A, fresh)
    finally:
        server.stop()

    server = start(SECRET_B)  # the old secret dropped: what only it signed is logged out
    try:
        assert me(server, old) == 401
        assert me(server, renewed) == 200
        assert me(server, fresh) == 200
    finally:
        server.stop()

"""The real process: `python -m campus` as an operator runs it, in both environments."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from campus.config import DEV_SECRET
from tests.support.apps import PASSWORD
from tests.support.servers import (
    SECRET,
    Campus,
    RedisServer,
    campus_env,
    free_port,
    production_env,
    read_by_server,
    run_campus,
    wait_for,
)


@pytest.fixture
def production(
    users_file: Path, redis_server: RedisServer, redis_db: redis.Redis
) -> Iterator[Campus]:
    env = production_env(redis_server.url, users_file)
    server = Campus(env)
    yield server
    server.stop()


def test_development_serves_the_demo_account_from_memory() -> None:
    server = Campus(campus_env())
    try:
        assert server.request("/healthz")[2] == {"status": "ok", "store": "memory"}
        status, _, body = server.request(
            "/login", {"email": "demo@campus.test", "password": "campus-demo"}
        )
        assert status == 200 and body["user"]["email"] == "demo@campus.test"
        assert server.request("/api/me")[2] == body
        assert server.request("/logout")[:1] == (200,)
        assert server.request("/api/me")[0] == 401
    finally:
        log = server.stop(signal.SIGINT)
    assert server.process.returncode == 0
    assert "listening on http://127.0.0.1:" in log
    assert "Traceback" not in log


def test_production_serves_the_same_from_redis(production: Campus, redis_db: redis.Redis) -> None:
    assert production.request("/healthz")[2] == {"status": "ok", "store": "redis"}
    status, _, body = production.request(
        "/login", {"email": "ann@campus.test", "password": PASSWORD}
    )
    assert status == 200 and body == {
        "user": {"email": "ann@campus.test", "name": "Ann", "roles": ["student"]}
    }
    assert len(redis_db.keys("campus:*")) == 2  # the session and Ann's index
    redis_db.config_resetstat()
    assert production.request("/api/me")[2] == body
    stats = redis_db.info("commandstats")
    calls = {
        k: v["calls"]
        for k, v in stats.items()
        if not k.startswith(("cmdstat_info", "cmdstat_config"))
    }
    assert calls == {"cmdstat_getex": 1}  # a read-only request: one Redis command
    assert production.request("/logout")[0] == 200
    assert production.request("/api/me")[0] == 401
    assert redis_db.keys("campus:*") == []  # the session, and with it Ann's index


def test_sigterm_exits_zero_and_closes_cleanly(production: Campus) -> None:
    log = production.stop(signal.SIGTERM)
    assert production.process.returncode == 0
    assert "stopped" in log and "Traceback" not in log


@pytest.mark.parametrize(
    "secret",
    [None, DEV_SECRET, "short-secret", f"{SECRET},short"],
    ids=["missing", "development-default", "short", "one-of-several-short"],
)
def test_production_refuses_a_bad_secret_with_one_line(secret: str | None) -> None:
    env = campus_env(CAMPUS_ENV="production")
    if secret is not None:
        env["CAMPUS_SESSION_SECRET"] = secret
    result = run_campus(env, "--port", str(free_port()))
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "CAMPUS_SESSION_SECRET" in lines[0], result.stderr
    assert secret is None or secret not in result.stderr or len(secret) < 13


def test_production_with_the_memory_store_warns(users_file: Path) -> None:
    env = campus_env(
        CAMPUS_ENV="production",
        CAMPUS_SESSION_SECRET=SECRET,
        CAMPUS_STORE="memory",
        CAMPUS_USERS_FILE=str(users_file),
    )
    server = Campus(env)
    log = server.stop()
    assert "memory store is per-process" in log and "not for production" in log


def test_a_plaintext_password_in_the_users_file_refuses_to_start(tmp_path: Path) -> None:
    users = tmp_path / "users.json"
    users.write_text(json.dumps([{"email": "a@b.c", "password": "hunter2"}]))
    result = run_campus(campus_env(CAMPUS_USERS_FILE=str(users)), "--port", str(free_port()))
    assert result.returncode != 0
    assert "plaintext" in result.stderr and "Traceback" not in result.stderr
    assert "hunter2" not in result.stderr


@pytest.mark.parametrize(
    "content, key",
    [
        ("[session\nidle_timeout = 5", "development.toml"),
        ("[session]\nidle_timout = 5\n", "session.idle_timout"),
        ('[session]\nidle_timeout = "soon"\n', "session.idle_timeout"),
        ("[bogus]\nx = 1\n", "bogus"),
    ],
    ids=["syntax", "unknown-key", "wrong-type", "unknown-section"],
)
def test_a_broken_config_file_is_one_line_naming_file_and_key(
    tmp_path: Path, content: str, key: str
) -> None:
    config = tmp_path / "development.toml"
    config.write_text(content)
    result = run_campus(campus_env(), "--config", str(config))
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(config) in lines[0] and key in lines[0], result.stderr


def test_sigterm_lets_a_request_in_flight_finish(production: Campus) -> None:
    import socket

    body = json.dumps({"email": "ann@campus.test", "password": PASSWORD}).encode()
    head = (
        f"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
        "Content-Type: application/json\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", production.port), timeout=10) as sock:
        sock.sendall(head + body[:10])  # the request is in flight: half its body sent
        wait_for(lambda: read_by_server(sock), "the server to read the request's start")
        production.process.send_signal(signal.SIGTERM)
        draining = "shutting down: no new connections, 1 request(s) in flight"
        wait_for(lambda: draining in production.log(), draining, 10)
        assert production.process.poll() is None  # still draining
        sock.sendall(body[10:])
        response = sock.recv(65536)
    assert response.startswith(b"HTTP/1.1 200 OK")
    production.process.wait(10)
    assert production.process.returncode == 0
    # and it no longer accepts new connections
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", production.port), timeout=1).close()

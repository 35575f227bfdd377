"""`python -m campus sessions count|revoke EMAIL` against a real redis-server and server."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.support.apps import PASSWORD
from tests.support.servers import (
    Campus,
    RedisServer,
    free_port,
    production_env,
    run_campus,
)


@pytest.fixture
def env(users_file: Path, redis_server: RedisServer, redis_db: redis.Redis) -> dict[str, str]:
    return production_env(redis_server.url, users_file)


@pytest.fixture
def server(env: dict[str, str]) -> Iterator[Campus]:
    server = Campus(env)
    yield server
    server.stop()


def campus(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_campus(env, *args, timeout=30)


def logged_in(server: Campus, email: str) -> str:
    server.cookie = ""
    assert server.request("/login", {"email": email, "password": PASSWORD})[0] == 200
    return server.cookie


def test_count_and_revoke_log_a_user_out_everywhere(
    env: dict[str, str], server: Campus, redis_db: redis.Redis
) -> None:
    ann = [logged_in(server, "ann@campus.test") for _ in range(3)]
    bob = logged_in(server, "bob@campus.test")
    assert campus(env, "sessions", "count").stdout == "4\n"  # the per-user indexes not counted

    result = campus(env, "sessions", "revoke", "  ANN@Campus.test ")
    assert (result.returncode, result.stdout) == (0, "revoked 3 sessions of ann@campus.test\n")
    for cookie in ann:
        server.cookie = cookie
        assert server.request("/api/me")[0] == 401
    server.cookie = bob
    assert server.request("/api/me")[0] == 200
    assert campus(env, "sessions", "count").stdout == "1\n"

    again = campus(env, "sessions", "revoke", "ann@campus.test")
    assert (again.returncode, again.stdout) == (0, "revoked 0 sessions of ann@campus.test\n")


def test_a_down_store_is_one_line_and_exit_1(env: dict[str, str]) -> None:
    env["CAMPUS_REDIS_URL"] = f"redis://127.0.0.1:{free_port()}/0"
    for args in (["sessions", "count"], ["sessions", "revoke", "ann@campus.test"]):
        started = time.monotonic()
        result = campus(env, *args)
        assert result.returncode == 1 and result.stdout == ""
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("campus: session store unavailable")
        assert time.monotonic() - started < 15


def test_the_memory_store_is_refused_not_reported_empty(env: dict[str, str]) -> None:
    env["CAMPUS_STORE"] = "memory"
    result = campus(env, "sessions", "revoke", "ann@campus.test")
    assert result.returncode == 1 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "need the redis store" in lines[0]


@pytest.mark.parametrize("email", ["nobody", "@campus.test", "ann@", "a b@campus.test"])
def test_revoking_what_is_no_email_is_one_line_and_exit_1(env: dict[str, str], email: str) -> None:
    result = campus(env, "sessions", "revoke", email)
    assert result.returncode == 1 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("campus: invalid email"), lines

"""What a login costs in Redis commands, counted on the wire of a real server process.

Counted with MONITOR: every command a client sends, one line each; the calls a Lua script
makes inside Redis show up as ``lua`` lines and are not round trips, so they are left out.
A fresh successful login (no session cookie) costs three commands: the reservation of an
attempt against the address and the email (one script, both counters), giving it back (one
script: the address's attempt returned, the email's count forgotten) and the session create.
A failed one costs one: its reservation is its count. (Before attempts were reserved first,
a failure cost three: address check, email count, address count.)
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import pytest
import redis

from tests.support.apps import PASSWORD
from tests.support.servers import Campus, RedisServer, production_env

MARKER = "campus-test:end-of-capture"


class Commands:
    """The commands clients send to a redis-server while the ``with`` block runs."""

    def __init__(self, server: RedisServer) -> None:
        self.sent: list[str] = []
        self._port = server.port
        self._marker = server.client()
        self._marker.ping()  # connected (and its handshake done) before we start watching
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> Commands:
        self._thread.start()
        assert self._ready.wait(10), "MONITOR did not start"
        return self

    def __exit__(
        self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._marker.echo(MARKER)
        self._thread.join(10)
        assert not self._thread.is_alive(), "MONITOR did not see the end marker"

    def _watch(self) -> None:
        client = redis.Redis(port=self._port, socket_timeout=10)
        with client.monitor() as monitor:  # type: ignore[no-untyped-call]
            self._ready.set()
            while True:
                entry = monitor.next_command()
                if MARKER in entry["command"]:
                    return
                if entry["client_type"] != "lua":
                    self.sent.append(entry["command"].split(" ", 1)[0].upper())


@pytest.fixture
def campus(users_file: Path, redis_server: RedisServer, redis_db: redis.Redis) -> Iterator[Campus]:
    env = production_env(redis_server.url, users_file, CAMPUS_LOGIN_MAX_FAILURES="3")
    server = Campus(env)
    # Warm up: the first calls load the scripts and open the pooled connection.
    assert server.request("/login", {"email": "bob@campus.test", "password": PASSWORD})[0] == 200
    server.cookie = ""
    yield server
    server.stop()


def login(campus: Campus, password: str = PASSWORD) -> int:
    campus.cookie = ""  # fresh: no session cookie
    status = campus.request("/login", {"email": "ann@campus.test", "password": password})[0]
    return status


def test_a_fresh_successful_login_costs_three_redis_commands(
    campus: Campus, redis_server: RedisServer, redis_db: redis.Redis
) -> None:
    redis_db.config_resetstat()
    with Commands(redis_server) as commands:
        assert login(campus) == 200
    assert commands.sent == ["EVALSHA"] * 3  # reserve, give back, create
    stats = redis_db.info("commandstats")
    assert stats["cmdstat_evalsha"]["calls"] == 3


def test_a_success_after_failures_still_costs_three(
    campus: Campus, redis_server: RedisServer
) -> None:
    assert login(campus, "wrong") == 403
    with Commands(redis_server) as commands:
        assert login(campus) == 200  # forgets Ann's failures in the call that gives back
    assert commands.sent == ["EVALSHA"] * 3


def test_a_failure_costs_one_and_so_does_a_throttled_attempt(
    campus: Campus, redis_server: RedisServer
) -> None:
    with Commands(redis_server) as failure:
        assert login(campus, "wrong") == 403  # the reservation, nothing after the check
    for _ in range(2):
        assert login(campus, "wrong") == 403
    with Commands(redis_server) as refused:
        assert login(campus) == 429  # refused before any password check
    assert failure.sent == ["EVALSHA"]
    assert refused.sent == ["EVALSHA"]


def test_logout_and_the_sessions_page_costs(campus: Campus, redis_server: RedisServer) -> None:
    """Logout reads the record as it deletes it (GETDEL: the record names its user) and drops
    it from the user's index (one script); /api/me stays one command; the listing is the
    session's read, the index, and one GET + PTTL per session in one pipeline. (A first
    delete also asks INFO what the server's persistence offers, again after a minute; on
    Redis 7.2+ with the append-only file a WAITAOF follows each delete: test_redis_crash.py.)"""
    assert login(campus) == 200
    assert campus.request("/logout")[0] == 200  # the first delete reads INFO
    assert login(campus) == 200
    assert campus.request("/logout")[0] == 200  # Redis loads the logout's script, once
    assert login(campus) == 200
    campus.request("/api/sessions")  # loads what it needs once
    with Commands(redis_server) as me:
        assert campus.request("/api/me")[0] == 200
    with Commands(redis_server) as listing:
        assert campus.request("/api/sessions")[0] == 200
    with Commands(redis_server) as logout:
        assert campus.request("/logout")[0] == 200
    assert me.sent == ["GETEX"]
    assert listing.sent == ["GETEX", "ZRANGE", "GET", "PTTL"]
    assert logout.sent == ["GETEX", "GETDEL", "EVALSHA"]

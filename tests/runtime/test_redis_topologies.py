"""campus processes on a Sentinel group through a failover, and on a Cluster."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import pytest
from tornado.web import decode_signed_value

from tests.support.apps import PASSWORD
from tests.support.redis_topologies import Cluster, SentinelGroup, wait_for
from tests.support.servers import SECRET, Campus, production_env, run_campus

ANN = {"email": "ann@campus.test", "password": PASSWORD}
BOB = {"email": "bob@campus.test", "password": PASSWORD}


def production(redis_url: str, users_file: Path) -> Campus:
    return Campus(production_env(redis_url, users_file))


def session_key(cookie: str) -> str:
    sid = decode_signed_value(SECRET, "campus.sid", cookie)
    assert sid is not None
    return "campus:" + hashlib.sha256(sid).hexdigest()


@pytest.mark.parametrize("how", ["planned", "crash"])
def test_a_session_survives_a_sentinel_failover(how: str, tmp_path: Path, users_file: Path) -> None:
    """planned: SENTINEL FAILOVER, then the old master retired; crash: the master is killed
    and the Sentinel fails over by itself (1 s to notice it down, then promotes)."""
    group = SentinelGroup(tmp_path)
    try:
        group.start()
        server = production(group.url, users_file)
        try:
            status, _, me = server.request("/login", ANN)
            assert status == 200
            key = session_key(server.cookie)
            replica = group.replica.client()
            wait_for(lambda: replica.exists(key), "the session on the replica", seconds=10)

            if how == "planned":
                group.fail_over()  # the replica is the master now
                group.master.stop()  # and the old master is retired
            else:
                group.master.kill()

            statuses = []
            deadline = time.monotonic() + 20
            while (answer := server.request("/api/me"))[0] != 200:
                statuses.append(answer[0])
                assert time.monotonic() < deadline, statuses
                time.sleep(0.1)
            assert answer[2] == me  # the same session, read from the new master
            assert set(statuses) <= {503}  # at worst "unavailable" for a moment, never a 500
            assert server.request("/logout")[::2] == (200, {})  # a write on the new master
            assert not group.current_master().exists(key)
        finally:
            log = server.stop()
        assert "Traceback" not in log
    finally:
        group.stop()


def test_campus_on_a_cluster_logs_a_user_out_everywhere(
    redis_cluster: Cluster, users_file: Path
) -> None:
    redis_cluster.flush()
    server = production(redis_cluster.url, users_file)
    try:
        cookies: dict[str, Any] = {"ann": [], "bob": []}
        for name, login in (("ann", ANN), ("ann", ANN), ("ann", ANN), ("bob", BOB)):
            server.cookie = ""
            assert server.request("/login", login)[0] == 200
            cookies[name].append(server.cookie)
        slots = {
            redis_cluster.nodes[0].client().cluster("KEYSLOT", session_key(c))
            for c in cookies["ann"]
        }
        assert len(slots) == 3  # Ann's sessions and her index live in different hash slots

        env = production_env(redis_cluster.url, users_file)
        assert run_campus(env, "sessions", "count", timeout=30).stdout == "4\n"
        revoke = run_campus(env, "sessions", "revoke", "ann@campus.test", timeout=30)
        assert revoke.stdout == "revoked 3 sessions of ann@campus.test\n", revoke.stderr
        for cookie in cookies["ann"]:
            server.cookie = cookie
            assert server.request("/api/me")[0] == 401
        server.cookie = cookies["bob"][0]
        assert server.request("/api/me")[0] == 200
        assert server.request("/logout")[::2] == (200, {})
        assert run_campus(env, "sessions", "count", timeout=30).stdout == "0\n"
    finally:
        log = server.stop()
    assert "Traceback" not in log

"""Accounts that live, on real server processes: a user added can log in, a user removed is
signed out, a record edited by hand shows, a broken file changes nothing — within 2 s,
without a restart. On the memory store, on Redis, and on two processes sharing one Redis.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.support.apps import CHEAP_HASHER, PASSWORD
from tests.support.servers import REPO, Campus, RedisServer, campus_env, redis_keys, wait_for

#: The contract: a change to the users file shows within this many seconds...
FOLLOWS_WITHIN = 2.0
#: ... and the requests that look for it (on a busy machine) may take this much on top.
LOOKING = 1.0
ANN = {"email": "ann@campus.test", "name": "Ann", "roles": ["student"]}
BOB = {"email": "bob@campus.test", "name": "Bob", "roles": ["staff"]}
#: Long enough, and on no list of common passwords.
CARL_PASSWORD = "mauve-lantern-orbit-42"


def write_users(path: Path, users: list[dict[str, Any]]) -> None:
    """As an operator's tooling writes the file: a new file renamed over the old one."""
    records = [{**user, "password_hash": CHEAP_HASHER.hash(PASSWORD)} for user in users]
    temporary = path.with_name(path.name + ".new")
    temporary.write_text(json.dumps(records, indent=2))
    os.replace(temporary, path)


def edit_users(path: Path, change: Callable[[list[dict[str, Any]]], None]) -> None:
    """Edit the records by hand (hashes untouched), saved with a rename."""
    records = json.loads(path.read_text())
    change(records)
    temporary = path.with_name(path.name + ".new")
    temporary.write_text(json.dumps(records, indent=2))
    os.replace(temporary, path)


class Site:
    """One or two campus processes on one users file (two: on one Redis)."""

    def __init__(self, env: dict[str, str], processes: int) -> None:
        self.env = env
        self.servers: list[Campus] = []
        try:
            for _ in range(processes):
                self.servers.append(Campus(env))
        except BaseException:
            self.stop()
            raise

    def stop(self) -> str:
        return "".join(server.stop() for server in self.servers)

    def cli(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        """`python -m campus ARGS` with the servers' environment."""
        return subprocess.run(
            [sys.executable, "-m", "campus", *args],
            cwd=REPO,
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def log_in(self, email: str, password: str = PASSWORD) -> int:
        """Log in on the first server; every server then holds that session's cookie."""
        first = self.servers[0]
        first.cookie = ""
        status = first.request("/login", {"email": email, "password": password})[0]
        for server in self.servers[1:]:
            server.cookie = first.cookie
        return status

    def everywhere(self, path: str) -> list[tuple[int, Any]]:
        """(status, body) of the same request on every server, with the session's cookie."""
        answers = []
        for server in self.servers:
            cookie = server.cookie
            status, _, body = server.request(path)
            server.cookie = cookie  # a 401 clears it: keep asking with the old one
            answers.append((status, body))
        return answers


def follows(condition: Callable[[], bool], what: str) -> None:
    """Wait until *condition* holds: within the contract's 2 s (and the requests' own time)."""
    wait_for(condition, what, FOLLOWS_WITHIN + LOOKING)


def reloaded(site: Site, times: int) -> Callable[[], bool]:
    """Whether every server has loaded a new version of the users file *times* times."""
    return lambda: all(
        server.log().count("users file reloaded") >= times for server in site.servers
    )


def logs_in(site: Site, email: str, password: str = PASSWORD) -> Callable[[], bool]:
    return lambda: all(
        server.request("/login", {"email": email, "password": password})[0] == 200
        for server in site.servers
    )


@pytest.fixture
def users_path(tmp_path: Path) -> Path:
    path = tmp_path / "etc" / "users.json"
    path.parent.mkdir()
    write_users(path, [ANN, BOB])
    return path


@pytest.fixture(params=["memory", "redis", "two-on-redis"])
def topology(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def site(
    topology: str, users_path: Path, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Site]:
    # Refused logins are part of these tests, not what they test: no throttling here.
    env = campus_env(CAMPUS_USERS_FILE=str(users_path), CAMPUS_LOGIN_MAX_FAILURES="1000")
    if topology != "memory":
        # A Redis of this test's own: the sessions it counts are its own.
        server = RedisServer(tmp_path)
        server.start()
        request.addfinalizer(server.stop)
        env.update(CAMPUS_STORE="redis", CAMPUS_REDIS_URL=server.url)
    site = Site(env, 2 if topology == "two-on-redis" else 1)
    yield site
    log = site.stop()
    assert "Traceback" not in log, log


def redis_of(site: Site) -> redis.Redis | None:
    url = site.env.get("CAMPUS_REDIS_URL")
    return None if url is None else redis.Redis.from_url(url)


def session_keys(site: Site) -> list[bytes]:
    client = redis_of(site)
    assert client is not None
    # A session is prefix + SHA-256 of its id; beside them: users' indexes, login counters.
    return [key for key in redis_keys(client, "campus:" + "?" * 64) if b":" not in key[7:]]


def test_a_user_added_can_log_in_within_2_s(site: Site) -> None:
    assert site.log_in("carl@campus.test", CARL_PASSWORD) == 403
    added = site.cli("users", "add", "Carl@Campus.test", "--password-stdin", stdin=CARL_PASSWORD)
    assert added.returncode == 0, added.stderr
    assert "running servers follow the change within 2 s" in added.stdout
    follows(reloaded(site, 1), "each server to load the file with Carl")
    assert logs_in(site, "carl@campus.test", CARL_PASSWORD)()
    assert site.everywhere("/api/me") == [
        (200, {"user": {"email": "carl@campus.test", "roles": []}})
    ] * len(site.servers)


def test_a_user_removed_is_signed_out_and_cannot_log_in(site: Site, topology: str) -> None:
    assert site.log_in("ann@campus.test") == 200
    assert site.everywhere("/api/me") == [(200, {"user": ANN})] * len(site.servers)
    removed = site.cli("users", "remove", "ann@campus.test")
    assert removed.returncode == 0, removed.stderr
    said = removed.stdout.splitlines()
    assert said[0].startswith("removed ann@campus.test from ")
    if topology == "memory":
        assert "the running server ends the user's sessions within 2 s" in said[1]
        follows(
            lambda: site.everywhere("/api/me") == [(401, {"errorMessage": "Not logged in"})],
            "Ann's session to end",
        )
    else:
        # The command ended the session in Redis itself: at once, on every server.
        assert said[1] == "ended 1 session of ann@campus.test"
        assert site.everywhere("/api/me") == [(401, {"errorMessage": "Not logged in"})] * len(
            site.servers
        )
        assert session_keys(site) == []
    follows(reloaded(site, 1), "each server to load the file without Ann")
    assert refused(site, "ann@campus.test")()
    # Ann back in the file: her old session stays ended (it was deleted, not hidden).
    cookie = site.servers[0].cookie
    write_users(Path(site.env["CAMPUS_USERS_FILE"]), [ANN, BOB])
    follows(reloaded(site, 2), "each server to load the file with Ann again")
    assert logs_in(site, "ann@campus.test")()
    site.servers[0].cookie = cookie
    assert site.servers[0].request("/api/me")[0] == 401


def refused(site: Site, email: str) -> Callable[[], bool]:
    return lambda: all(
        server.request("/login", {"email": email, "password": PASSWORD})[0] == 403
        for server in site.servers
    )


def ended_for_removal(server: Campus) -> float:
    """campus_sessions_destroyed_total{cause="removed"} of a server (loopback may read it)."""
    _, _, text = server.request("/metrics")
    assert isinstance(text, bytes)
    for line in text.decode().splitlines():
        if line.startswith('campus_sessions_destroyed_total{cause="removed"}'):
            return float(line.split()[-1])
    raise AssertionError("no campus_sessions_destroyed_total{cause=removed} in /metrics")


def test_a_user_removed_by_hand_is_signed_out_and_the_session_deleted(
    site: Site, users_path: Path, topology: str
) -> None:
    """No command: the file loses Ann. Every server drops her sessions from the store."""
    assert site.log_in("ann@campus.test") == 200
    assert site.log_in("bob@campus.test") == 200
    edit_users(users_path, lambda records: records.remove(records[0]))
    # Before Ann's session makes another request, the servers have ended it in the store.
    if topology == "memory":
        follows(lambda: ended_for_removal(site.servers[0]) == 1, "Ann's session to be ended")
    else:
        follows(lambda: len(session_keys(site)) == 1, "Ann's session to leave Redis")
    follows(reloaded(site, 1), "each server to load the file without Ann")
    assert refused(site, "ann@campus.test")()
    assert site.everywhere("/api/me") == [(200, {"user": BOB})] * len(site.servers)  # Bob stays


def test_roles_edited_by_hand_show_in_the_next_api_me(site: Site, users_path: Path) -> None:
    assert site.log_in("ann@campus.test") == 200
    new_ann = {**ANN, "name": "Ann Smith", "roles": ["student", "tutor"]}

    def promote(records: list[dict[str, Any]]) -> None:
        records[0].update(name="Ann Smith", roles=["student", "tutor"])

    edit_users(users_path, promote)
    follows(
        lambda: site.everywhere("/api/me") == [(200, {"user": new_ann})] * len(site.servers),
        "Ann's new roles",
    )
    # The login answers the file's record too.
    assert site.servers[-1].request("/login", {"email": "ann@campus.test", "password": PASSWORD})[
        2
    ] == {"user": new_ann}


def test_a_broken_file_keeps_the_last_good_directory(site: Site, users_path: Path) -> None:
    assert site.log_in("ann@campus.test") == 200
    good = users_path.read_text()
    users_path.write_text(good[: len(good) // 2])  # saved half-way through, in place
    failed = "users file not reloaded, the last good one stays (2 users)"
    wait_for(
        lambda: all(failed in server.log() for server in site.servers),
        "each server to report the broken file",
        FOLLOWS_WITHIN + LOOKING,
    )
    assert site.everywhere("/api/me") == [(200, {"user": ANN})] * len(site.servers)
    assert logs_in(site, "bob@campus.test")()
    users_path.write_text(good.replace('"Bob"', '"Robert"'))  # fixed
    wait_for(
        lambda: all("users file reloaded" in server.log() for server in site.servers),
        "each server to load the fixed file",
        FOLLOWS_WITHIN + LOOKING,
    )
    for server in site.servers:
        log = server.log()
        assert log.count(failed) == 1, log  # once, not once per poll
        assert server.process.poll() is None
    site.servers[0].cookie = ""
    site.servers[0].request("/login", {"email": "bob@campus.test", "password": PASSWORD})
    assert site.servers[0].request("/api/me")[2] == {"user": {**BOB, "name": "Robert"}}


def test_each_worker_follows_the_file(users_path: Path, tmp_path: Path) -> None:
    """[server] processes = 2: both workers reload (a line each) and answer the new record."""
    server = RedisServer(tmp_path)
    server.start()
    env = campus_env(
        CAMPUS_USERS_FILE=str(users_path),
        CAMPUS_STORE="redis",
        CAMPUS_REDIS_URL=server.url,
        CAMPUS_SERVER_PROCESSES="2",
    )
    campus = Campus(env)
    try:
        assert (
            campus.request("/login", {"email": "ann@campus.test", "password": PASSWORD})[0] == 200
        )
        edit_users(users_path, lambda records: records[0].update(name="Ann Smith"))
        wait_for(
            lambda: campus.log().count("users file reloaded") == 2,
            "both workers to reload",
            FOLLOWS_WITHIN + LOOKING,
        )
        # New connections, spread over both workers by the kernel: every one answers anew.
        for _ in range(20):
            assert campus.request("/api/me")[2]["user"]["name"] == "Ann Smith"
    finally:
        log = campus.stop()
        server.stop()
    assert "Traceback" not in log


def test_a_server_behind_looks_again_before_it_ends_a_new_users_session(
    users_path: Path, tmp_path: Path
) -> None:
    """Two processes on one Redis poll the file each on its own clock. Carl signs in on the
    one that saw him first; the other, asked before its own poll, looks at the file again
    instead of taking him for a removed user."""
    server = RedisServer(tmp_path)
    server.start()
    env = campus_env(
        CAMPUS_USERS_FILE=str(users_path),
        CAMPUS_STORE="redis",
        CAMPUS_REDIS_URL=server.url,
        CAMPUS_LOGIN_MAX_FAILURES="1000",  # the attempts before the first one knows Carl
    )
    site = Site(env, 2)
    try:
        carl = {"email": "carl@campus.test", "name": "Carl", "roles": []}
        write_users(users_path, [ANN, BOB, carl])
        login = {"email": "carl@campus.test", "password": PASSWORD}
        first: list[Campus] = []

        def signed_in_somewhere() -> bool:
            for campus in site.servers:
                if campus.request("/login", login)[0] == 200:
                    first.append(campus)
                    return True
            return False

        wait_for(signed_in_somewhere, "Carl's first sign-in")
        (other,) = [campus for campus in site.servers if campus is not first[0]]
        other.cookie = first[0].cookie
        assert other.request("/api/me")[2] == {"user": carl}  # at once
    finally:
        log = site.stop()
        server.stop()
    assert "Traceback" not in log

"""A real campus process while its Redis dies under load, hangs, and comes back.

The redis-servers here are the tests' own (never the suite's shared one): they get killed.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from campus.session import CookieSigner
from campus.session.store import new_session_id
from tests.support.apps import PASSWORD
from tests.support.servers import PERSISTENT, SECRET, Campus, RedisServer, production_env, wait_for

UNAVAILABLE = {"errorMessage": "Session store unavailable"}
#: Paths that must not care about the store, and one that needs the session.
STATIC = ["/", "/index.html", "/courses/42"]
SESSION = "/api/me"


@dataclass
class Answer:
    path: str
    started: float
    seconds: float
    status: int
    retry_after: str | None
    body: bytes


def get(port: int, path: str, cookie: str = "", timeout: float = 10) -> Answer:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    started = time.monotonic()
    try:
        connection.request("GET", path, headers={"Cookie": f"campus.sid={cookie}"})
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    seconds = time.monotonic() - started
    return Answer(path, started, seconds, response.status, response.getheader("Retry-After"), body)


class Load:
    """A few threads asking for the session route and static files until told to stop."""

    def __init__(self, port: int, cookie: str, workers: int = 4) -> None:
        self.answers: list[Answer] = []
        self.errors: list[BaseException] = []
        self.stop = threading.Event()
        paths = [SESSION, *STATIC]
        self.threads = [
            threading.Thread(target=self._run, args=(port, cookie, paths[i:] + paths[:i]))
            for i in range(workers)
        ]
        for thread in self.threads:
            thread.start()

    def _run(self, port: int, cookie: str, paths: list[str]) -> None:
        deadline = time.monotonic() + 60  # bound the loop whatever happens to the test
        while not self.stop.is_set() and time.monotonic() < deadline:
            for path in paths:
                try:
                    self.answers.append(get(port, path, cookie if path == SESSION else ""))
                except (OSError, http.client.HTTPException) as exc:
                    self.errors.append(exc)
            time.sleep(0.01)

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)


def production(redis_url: str, users_file: Path) -> Campus:
    return Campus(production_env(redis_url, users_file, CAMPUS_REDIS_TIMEOUT="1.0"))


def assert_unavailable(answer: Answer) -> None:
    assert (answer.status, answer.retry_after) == (503, "1"), answer
    assert json.loads(answer.body) == UNAVAILABLE


@pytest.fixture
def redis_with_aof(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path, *PERSISTENT)
    server.start()
    yield server
    server.stop()


def test_redis_killed_under_load_then_back(redis_with_aof: RedisServer, users_file: Path) -> None:
    server = production(redis_with_aof.url, users_file)
    try:
        login = {"email": "ann@campus.test", "password": PASSWORD}
        status, _, before = server.request("/login", login)
        assert status == 200
        load = Load(server.port, server.cookie)
        try:
            wait_for(lambda: len(load.answers) >= 20, "the load's first answers")
            killed = time.monotonic()
            redis_with_aof.kill()
            wait_for(  # the load meets the outage
                lambda: any(a.started > killed + 0.1 and a.status == 503 for a in load.answers),
                "a 503 under load",
            )

            # Down: the session route fails fast and says so; the store-free routes don't care.
            assert_unavailable(get(server.port, SESSION, server.cookie))
            health = get(server.port, "/healthz")
            assert health.status == 503 and health.seconds < 2.0
            assert json.loads(health.body)["status"] == "unavailable"
            for path in STATIC:
                assert get(server.port, path).status == 200
            assert server.request("/login", login)[0] == 503
            assert server.request("/logout")[2] == {"errorMessage": "Could not log out."}

            restarting = time.monotonic()
            redis_with_aof.start()  # the same server, same port, its append-only file
            deadline = time.monotonic() + 10
            while (answer := get(server.port, SESSION, server.cookie)).status != 200:
                assert time.monotonic() < deadline, answer
                time.sleep(0.05)
            # The session from before the outage is still valid: nobody had to log in again.
            assert json.loads(answer.body) == before
            recovered = time.monotonic()
            wait_for(lambda: any(a.started > recovered for a in load.answers), "answers after")
        finally:
            load.finish()
    finally:
        log = server.stop()

    assert not load.errors  # no hang, no dropped connection
    assert "Traceback" not in log
    # Answered entirely while Redis was down (not merely asked before it came back).
    during = [
        a for a in load.answers if killed + 0.1 < a.started and a.started + a.seconds < restarting
    ]
    after = [a for a in load.answers if a.started > recovered]
    assert during and after
    for answer in load.answers:
        assert answer.seconds < 2.0, answer  # "within about a second", generously bounded
        if answer.path != SESSION:
            assert answer.status == 200, answer
        elif answer.status != 200:
            assert_unavailable(answer)
    assert {a.status for a in during if a.path == SESSION} == {503}
    assert {a.status for a in after} == {200}


def test_a_redis_that_never_answers(users_file: Path) -> None:
    """TCP accepted, no reply ever: every store call is cut at the timeout (1 s)."""
    with socket.socket() as hole:
        hole.bind(("127.0.0.1", 0))
        hole.listen(64)
        server = production(f"redis://127.0.0.1:{hole.getsockname()[1]}/0", users_file)
        try:
            cookie = CookieSigner([SECRET]).sign("campus.sid", new_session_id())
            answer = get(server.port, SESSION, cookie)
            assert_unavailable(answer)
            assert answer.seconds < 2.5  # one timeout, not the four it took without a deadline
            health = get(server.port, "/healthz")
            assert health.status == 503 and health.seconds < 2.5
            for path in STATIC:
                assert get(server.port, path).status == 200
        finally:
            server.stop()

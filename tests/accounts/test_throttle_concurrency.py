"""Throttling under concurrency, against a real `python -m campus` process on both stores.

Fifty guesses sent at once used to get fifty 403s: the counter was checked before the Argon2
check and counted after it, so every guess passed the check before any was counted. Now each
attempt is counted before its password is checked; at most ``max_failures`` guesses of a
burst reach the check, the rest are 429.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support.apps import PASSWORD
from tests.support.servers import SECRET, Campus, campus_env

LIMIT = 5
BURST = 50


@pytest.fixture(params=["memory", "redis"])
def campus(request: pytest.FixtureRequest, users_file: Path) -> Iterator[Campus]:
    env = campus_env(
        CAMPUS_USERS_FILE=str(users_file),
        CAMPUS_LOGIN_MAX_FAILURES=str(LIMIT),
        CAMPUS_SERVER_TRUST_PROXY="true",  # so one test can speak from many addresses
    )
    if request.param == "redis":
        redis_server = request.getfixturevalue("redis_server")
        request.getfixturevalue("redis_db")
        env.update(
            CAMPUS_ENV="production",
            CAMPUS_SESSION_SECRET=SECRET,
            CAMPUS_REDIS_URL=redis_server.url,
            CAMPUS_SESSION_SECURE="false",
        )
    server = Campus(env)
    yield server
    log = server.stop()
    assert "Traceback" not in log, log


def burst(campus: Campus, logins: list[tuple[str, str, str]]) -> Counter[int]:
    """POST every (email, password, address) login at once; count the statuses."""
    start = threading.Barrier(len(logins))

    def post(login: tuple[str, str, str]) -> int:
        email, password, address = login
        request = urllib.request.Request(
            f"http://127.0.0.1:{campus.port}/login",
            data=json.dumps({"email": email, "password": password}).encode(),
            headers={"Content-Type": "application/json", "X-Forwarded-For": address},
        )
        start.wait(10)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return exc.code

    with ThreadPoolExecutor(len(logins)) as pool:
        return Counter(pool.map(post, logins))


def test_a_burst_from_one_address_gets_at_most_the_limit_of_403s(campus: Campus) -> None:
    logins = [(f"u{i}@campus.test", "x", "192.0.2.1") for i in range(BURST)]
    statuses = burst(campus, logins)
    assert statuses == Counter({403: LIMIT, 429: BURST - LIMIT}), statuses
    # ... and while throttled even the right password is refused
    assert burst(campus, [("ann@campus.test", PASSWORD, "192.0.2.1")]) == Counter({429: 1})
    assert burst(campus, [("ann@campus.test", PASSWORD, "192.0.2.2")]) == Counter({200: 1})


def test_a_burst_at_one_email_gets_at_most_the_limit_of_403s(campus: Campus) -> None:
    logins = [("ann@campus.test", "wrong", f"198.51.100.{i}") for i in range(BURST)]
    statuses = burst(campus, logins)
    assert statuses == Counter({403: LIMIT, 429: BURST - LIMIT}), statuses
    assert burst(campus, [("ann@campus.test", PASSWORD, "203.0.113.9")]) == Counter({429: 1})


def test_successes_give_their_attempt_back(campus: Campus) -> None:
    """Attempts in flight count (that is the point), but a success returns its slot.

    So up to ``max_failures`` logins at once pass from one address, and after any number of
    successes the address still has all its room for failures.
    """
    good = [("ann@campus.test", PASSWORD, "192.0.2.7")] * LIMIT
    for _ in range(3):
        assert burst(campus, good) == Counter({200: LIMIT})
    wrong = [(f"u{i}@campus.test", "x", "192.0.2.7") for i in range(LIMIT)]
    assert burst(campus, wrong) == Counter({403: LIMIT})
    assert burst(campus, wrong[:1]) == Counter({429: 1})

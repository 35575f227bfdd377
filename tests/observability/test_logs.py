"""The logs of a real server never hold a password, a hash, a secret or a session id.

A production process (Redis with a password of its own, two session secrets) goes through
a scripted day: logins that work and fail, an unknown email, throttling, a forged request,
garbage, logouts, and a Redis outage with its errors. Then everything it wrote to stdout and
stderr is searched for every secret it was handed or made.
"""

from __future__ import annotations

import base64
import http.client
import json
import signal
from pathlib import Path

import pytest
import redis

from tests.support.apps import PASSWORD
from tests.support.servers import Campus, RedisServer, campus_env

REDIS_PASSWORD = "redis-pass-7d4e1b-never-logged"
NEW_SECRET = "new-session-secret-" + "n" * 30
OLD_SECRET = "old-session-secret-" + "o" * 30
WRONG = ["wrong-password-c0ffee", "another-wrong-one-bead"]


class GuardedRedis(RedisServer):
    """A redis-server that wants a password, as production's should."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory, "--requirepass", REDIS_PASSWORD)

    @property
    def url(self) -> str:
        return f"redis://:{REDIS_PASSWORD}@127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, password=REDIS_PASSWORD, socket_timeout=2)


def session_id(cookie: str) -> str:
    """The raw id inside a signed cookie value (2|1:kv|n:ts|n:name|n:b64(id)|sig)."""
    return base64.b64decode(cookie.split("|")[4].split(":", 1)[1]).decode()


def forged_post(port: int, path: str) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("POST", path, body=b"{}", headers={"Origin": "https://evil.test"})
        return connection.getresponse().status
    finally:
        connection.close()


@pytest.mark.parametrize("kind", ["text", "json"])
def test_a_scripted_day_leaves_no_secret_in_the_logs(
    kind: str, users_file: Path, tmp_path: Path
) -> None:
    store = GuardedRedis(tmp_path)
    store.start()
    server = Campus(
        campus_env(
            CAMPUS_ENV="production",
            CAMPUS_SESSION_SECRET=f"{NEW_SECRET},{OLD_SECRET}",
            CAMPUS_REDIS_URL=store.url,
            CAMPUS_REDIS_TIMEOUT="0.3",
            CAMPUS_USERS_FILE=str(users_file),
            CAMPUS_LOGIN_MAX_FAILURES="3",
            CAMPUS_SESSION_SECURE="false",
            CAMPUS_LOG_FORMAT=kind,
        )
    )
    cookies: list[str] = []
    statuses: list[int] = []
    try:

        def call(path: str, body: object = None, cookie: str | None = None) -> int:
            if cookie is not None:
                server.cookie = cookie
            status = server.request(path, body)[0]
            statuses.append(status)
            if server.cookie and server.cookie not in cookies:
                cookies.append(server.cookie)
            return status

        ann, bob = "ann@campus.test", "bob@campus.test"
        assert call("/login", {"email": ann, "password": PASSWORD}) == 200
        ann_cookie = server.cookie
        assert call("/api/me") == 200
        assert call("/login", {"email": ann, "password": WRONG[0]}, cookie="") == 403
        assert call("/login", {"email": "nobody@campus.test", "password": WRONG[1]}) == 403
        assert call("/login", {"email": ann, "password": WRONG[1]}) == 403
        assert call("/login", {"email": ann, "password": PASSWORD}) == 429  # the address
        assert call("/logout", cookie=ann_cookie) == 200
        assert call("/api/me", cookie=ann_cookie) == 401
        store.client().flushall()  # a new window: Bob's turn
        assert call("/login", {"email": bob, "password": PASSWORD}, cookie="") == 200
        bob_cookie = server.cookie
        assert call("/api/me", cookie=bob_cookie[:-3] + "abc") == 401  # tampered
        assert call("/login", ["not", "an object"]) == 400
        assert forged_post(server.port, "/logout") == 403
        store.stop()  # an outage: errors get logged now
        assert call("/api/me", cookie=bob_cookie) == 503
        assert call("/login", {"email": bob, "password": PASSWORD}, cookie="") == 503
        assert call("/logout", cookie=bob_cookie) == 500
        store.start()
        assert call("/api/me", cookie=bob_cookie) == 401  # Redis came back empty
    finally:
        log = server.stop(signal.SIGTERM)
        store.stop()

    # The log is real: it recorded the day, errors included ...
    assert log.count("POST /login") >= 8 and " 429 " in log and " 503 " in log, log
    assert "store unavailable" in log.lower(), log
    # ... and none of these.
    hashes = [record["password_hash"] for record in json.loads(users_file.read_text())]
    secrets = [PASSWORD, *WRONG, *hashes, NEW_SECRET, OLD_SECRET, REDIS_PASSWORD]
    secrets += [h.rsplit("$", 1)[1] for h in hashes]  # the digest alone
    assert len(cookies) >= 2
    for cookie in cookies:
        secrets += [cookie, cookie.rsplit("|", 1)[1], session_id(cookie)]
    for secret in secrets:
        assert secret not in log, f"{secret[:12]}... is in the log:\n{log}"
    if kind == "json":
        check_json(log, statuses)


ACCESS_KEYS = ["time", "level", "logger", "message", "request_id"]
ACCESS_KEYS += ["method", "path", "status", "duration_ms", "client"]


def check_json(log: str, statuses: list[int]) -> None:
    """Every line one object of the documented schema; errors name their request."""
    entries = [json.loads(line) for line in log.splitlines()]
    for entry in entries:
        assert list(entry)[:4] == ["time", "level", "logger", "message"], entry
    access = [e for e in entries if e["logger"] == "campus.access"]
    assert all(list(e)[: len(ACCESS_KEYS)] == ACCESS_KEYS for e in access), access
    # our calls, the forged POST and the start-up health check: one line each
    assert sorted(e["status"] for e in access) == sorted([*statuses, 403, 200])
    assert {e["client"] for e in access} == {"127.0.0.1"}
    by_id = {e["request_id"]: e for e in access}
    errors = [e for e in entries if e["logger"] != "campus.access" and e["level"] != "INFO"]
    failed = [e for e in errors if "store unavailable" in e["message"].lower()]
    assert failed, errors
    for entry in failed:  # a store failure's line names the request that failed
        assert by_id[entry["request_id"]]["status"] in (500, 503), entry
    startup = [e for e in entries if e["logger"] == "campus"]
    assert "listening on" in startup[0]["message"] and "stopped" in startup[-1]["message"]

"""A bounded fuzz run: thousands of random requests against a live `python -m campus`.

The server runs as in production (Redis store, trust_proxy on so the forwarded headers are
parsed too) from a directory whose static/ and dist/ sit beside planted secrets. Requests are
well-framed garbage, mostly: random methods, targets, headers, cookies and bodies, and now
and then a malformed request line. Whatever comes in: no 5xx, no traceback (in a body or
in the log), no byte from outside static/ and dist/, no session in Redis, and the process
still serves and shuts down cleanly. Bounded by FUZZ_REQUESTS and FUZZ_SECONDS; the seed
is printed on failure and can be replayed with CAMPUS_FUZZ_SEED.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from campus.session import CookieSigner
from tests.support.rawhttp import SECRET, Response, build, exchange, plant_site
from tests.support.servers import REPO, Campus, RedisServer, campus_env, redis_keys
from tests.support.servers import SECRET as SESSION_SECRET

FUZZ_REQUESTS = 5000
FUZZ_SECONDS = 25.0
ROUTES = ["/", "/login", "/logout", "/api/me", "/api/", "/api/x", "/healthz", "/app.js"]
ROUTES += ["/robots.txt", "/img/logo.svg", "/deep/link", "/index.html", "/assets/main.js"]
PIECES = ["..", "%2e%2e", "%2f", "%5c", "\\", "%00", "secret.txt", "private", "leak.txt"]
PIECES += ["linked", "inner.txt", "static", "dist", "config", "campus.env", "a%20b", "%ff", "~"]
HEADERS = ["Origin", "Referer", "X-Forwarded-For", "X-Forwarded-Proto", "Cookie", "Host"]
HEADERS += ["Content-Type", "Range", "If-None-Match", "If-Modified-Since", "Accept-Encoding"]
METHODS = ["GET"] * 8 + ["POST"] * 6 + ["HEAD", "PUT", "DELETE", "OPTIONS", "PATCH", "get"]


@pytest.fixture
def server(
    tmp_path: Path, users_file: Path, redis_server: RedisServer, redis_db: redis.Redis
) -> Iterator[Campus]:
    root = tmp_path / "site"
    root.mkdir()
    plant_site(root)
    env = campus_env(
        CAMPUS_ENV="production",
        CAMPUS_SESSION_SECRET=SESSION_SECRET,
        CAMPUS_STORE="redis",
        CAMPUS_REDIS_URL=redis_server.url,
        CAMPUS_USERS_FILE=str(users_file),
        CAMPUS_SERVER_TRUST_PROXY="true",
        PYTHONPATH=str(REPO),
    )
    server = Campus(env, cwd=root)  # static/ and dist/ are found here, next to the secrets
    yield server
    server.stop()


class Fuzzer:
    """Random requests from one seed, so a failure can be replayed."""

    def __init__(self, seed: int, port: int) -> None:
        self.rng = random.Random(seed)
        self.port = port
        self.own = f"http://127.0.0.1:{port}"
        signer = CookieSigner([SESSION_SECRET])
        self.signed = signer.sign("campus.sid", "A" * 43)  # ours, for an id never issued

    def text(self, size: int = 40, low: int = 0x20, high: int = 0x7E) -> str:
        return "".join(chr(self.rng.randint(low, high)) for _ in range(self.rng.randint(0, size)))

    def value(self, size: int) -> str:
        """A header value: printable Latin-1, now and then a control character (a 400)."""
        text = self.text(size, 0x20, 0xFF)
        if self.rng.random() < 0.9:
            text = "".join(c if c.isprintable() else "?" for c in text)
        return text

    def target(self) -> str:
        r = self.rng.random()
        if r < 0.4:
            path = self.rng.choice(ROUTES)
        elif r < 0.8:
            parts = [self.rng.choice(PIECES + ROUTES[1:]) for _ in range(self.rng.randint(1, 6))]
            path = "/" + "/".join(p.strip("/") for p in parts)
        elif r < 0.9:
            path = "/" + self.text(30, 0x21, 0x7E).replace("?", "").replace("#", "")
        else:
            path = self.rng.choice(["*", "http://evil.test/", "//etc/passwd", "/%", ""])
        if self.rng.random() < 0.2:
            path += "?" + self.text(20, 0x21, 0x7E).replace("#", "")
        return path

    def cookie(self) -> str:
        choice = self.rng.random()
        if choice < 0.3:
            return "campus.sid=" + self.signed
        if choice < 0.6:
            value = list(self.signed)
            for _ in range(self.rng.randint(1, 4)):
                value[self.rng.randrange(len(value))] = chr(self.rng.randint(0x21, 0x7E))
            return "campus.sid=" + "".join(value)
        if choice < 0.8:
            return "; ".join(f"campus.sid={self.text(30, 0x21, 0x7E)}" for _ in range(3))
        return self.value(200)

    def header(self) -> tuple[str, str]:
        name = self.rng.choice([*HEADERS, "X-" + self.text(10, 0x41, 0x5A)])
        if name == "Cookie":
            return name, self.cookie()
        if name == "Origin":
            return name, self.rng.choice([self.own, "null", "https://evil.test", self.text()])
        if name == "X-Forwarded-For":
            return name, ", ".join(self.text(15) for _ in range(self.rng.randint(1, 3)))
        if name == "Host":
            hosts = [f"127.0.0.1:{self.port}", "campus.test", "evil.test:443", "[::1]:80"]
            return name, self.rng.choice([*hosts, self.value(20)])
        if name == "Referer":
            return name, self.rng.choice([self.own + self.target(), "https://evil.test/", "x"])
        if name == "X-Forwarded-Proto":
            return name, self.rng.choice(["https", "http", "https, http", self.value(10)])
        return name, self.value(60)

    def body(self) -> bytes:
        r = self.rng.random()
        if r < 0.4:
            payload = {"email": self.text(30, 0x20, 0x2FF), "password": self.text(30, 0x20, 0x2FF)}
            return json.dumps(payload).encode()
        if r < 0.6:
            return bytes(self.rng.randrange(256) for _ in range(self.rng.randint(0, 300)))
        if r < 0.7:
            return json.dumps([[{"email": [1]}] * 3, None]).encode()
        if r < 0.72:
            return b"{" * 70_000  # over 64 KiB
        return self.text(100).encode()

    def request(self) -> tuple[bytes, bool]:
        """The request's bytes, and whether it is well-framed (so an answer is owed)."""
        if self.rng.random() < 0.03:
            garbage = self.text(80, 0x00, 0xFF).encode("latin-1")
            return garbage.replace(b"\r\n\r\n", b"") + b"\r\n\r\n", False
        method = self.rng.choice(METHODS)
        headers = [self.header() for _ in range(self.rng.randint(0, 5))]
        body = self.body() if method in ("POST", "PUT", "PATCH") else None
        target = self.target()
        if method == "POST" and self.rng.random() < 0.6:
            target = self.rng.choice(["/login"] * 3 + ["/logout"])  # where a POST does something
        return build(method, target, headers, body), True


def test_thousands_of_random_requests(server: Campus, redis_db: redis.Redis) -> None:
    seed = int(os.environ.get("CAMPUS_FUZZ_SEED", random.randrange(2**32)))
    fuzzer = Fuzzer(seed, server.port)
    statuses: dict[int | None, int] = {}
    started = time.monotonic()
    sent = 0
    while sent < FUZZ_REQUESTS and time.monotonic() - started < FUZZ_SECONDS:
        request, framed = fuzzer.request()
        response: Response = exchange(server.port, request)
        sent += 1
        statuses[response.status] = statuses.get(response.status, 0) + 1
        where = f"seed {seed}, request {sent}: {request[:300]!r} -> {response.raw[:300]!r}"
        assert response.status is not None or not framed, where
        assert response.status is None or response.status < 500, where
        assert b"Traceback" not in response.raw, where
        assert SECRET not in response.raw, where
    assert sent >= 500, f"only {sent} requests in {FUZZ_SECONDS}s (seed {seed})"

    sessions = [k for k in redis_keys(redis_db) if not k.startswith(b"campus:login:")]
    assert sessions == [], f"seed {seed}: garbage created {sessions}"
    assert exchange(server.port, build("GET", "/healthz")).status == 200  # still serving
    log = server.stop(signal.SIGTERM)
    assert server.process.returncode == 0
    assert "Traceback" not in log and "Uncaught exception" not in log, f"seed {seed}\n{log[-3000:]}"
    print(f"fuzz: {sent} requests in {time.monotonic() - started:.1f}s, seed {seed}: {statuses}")

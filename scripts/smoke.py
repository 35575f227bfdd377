"""The server end to end on whatever is installed: a redis-server of its own, a user added
with `campus users add`, then `python -m campus` in production, and five requests: health,
login, /api/me, logout, /api/me again. One line per step; exit status 0 when all held.

    .venv/bin/python scripts/smoke.py

`scripts/test --newest` runs it with the newest releases pyproject.toml allows.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EMAIL, PASSWORD = "smoke@campus.test", "smoke test " + secrets.token_hex(8)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(ready: Any, what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not ready():
        if time.monotonic() > deadline:
            raise SystemExit(f"smoke: {what} did not come up within {seconds:.0f} s")
        time.sleep(0.05)


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


class Client:
    """A browser of one cookie: the session's."""

    def __init__(self, port: int) -> None:
        self.base, self.cookie = f"http://127.0.0.1:{port}", ""

    def request(self, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.cookie:
            request.add_header("Cookie", self.cookie)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                status, headers, payload = response.status, response.headers, response.read()
        except urllib.error.HTTPError as error:
            status, headers, payload = error.code, error.headers, error.read()
        for header in headers.get_all("Set-Cookie") or []:
            if header.startswith("campus.sid="):
                self.cookie = header.split(";", 1)[0]
        return status, json.loads(payload)


def check(step: str, got: object, wanted: object) -> None:
    if got != wanted:
        raise SystemExit(f"smoke: {step}: got {got!r}, wanted {wanted!r}")
    print(f"smoke: {step}: ok")


def main() -> int:
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        raise SystemExit("smoke: redis-server is not on PATH")
    versions = subprocess.run(
        [sys.executable, "-c", "import tornado, redis; print(tornado.version, redis.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    print(f"smoke: tornado {versions[0]}, redis-py {versions[1]}, {sys.executable}")
    with tempfile.TemporaryDirectory(prefix="campus-smoke-") as work:
        redis_port, port = free_port(), free_port()
        redis = subprocess.Popen(
            [redis_server, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", ""],
            cwd=work,
            stdout=subprocess.DEVNULL,
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPUS_")}
        env.update(
            CAMPUS_ENV="production",
            CAMPUS_ROOT=str(ROOT),
            CAMPUS_PORT=str(port),
            CAMPUS_SESSION_SECRET=secrets.token_urlsafe(32),
            CAMPUS_REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
            CAMPUS_USERS_FILE=str(Path(work) / "users.json"),
        )
        campus = [sys.executable, "-m", "campus"]
        added = subprocess.run(
            [*campus, "users", "add", EMAIL, "--name", "Smoke", "--password-stdin"],
            input=PASSWORD + "\n",
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        check("users add", added.returncode, 0)
        server = subprocess.Popen(campus, env=env, cwd=ROOT)
        try:
            wait_until(lambda: answers(redis_port), "redis-server")
            wait_until(lambda: answers(port) or server.poll() is not None, "campus")
            client = Client(port)
            check(
                "GET /healthz",
                client.request("/healthz"),
                (200, {"status": "ok", "store": "redis"}),
            )
            user = {"email": EMAIL, "name": "Smoke", "roles": []}
            login = client.request("/login", {"email": EMAIL, "password": PASSWORD})
            check("POST /login", login, (200, {"user": user}))
            check("GET /api/me", client.request("/api/me"), (200, {"user": user}))
            check("POST /logout", client.request("/logout", {}), (200, {}))
            check("GET /api/me after logout", client.request("/api/me")[0], 401)
        finally:
            server.send_signal(signal.SIGTERM)
            status = server.wait(20)
            redis.terminate()
            redis.wait(10)
        check("SIGTERM", status, 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())

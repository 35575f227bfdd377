"""The targets bench/run.py compares, and how each is started, logged in to and measured.

A :class:`Bench` owns one redis-server on a free port (never the one on 6379) that every Redis
target shares, and starts one target at a time.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import redis
from harness import (
    BENCH,
    LOAD_CPU,
    ROOT,
    SERVER_CPU,
    BenchError,
    Sample,
    cpu_seconds,
    exactly,
    free_port,
    get,
    listening_pids,
    load_average,
    login,
    rss_kib,
    stop,
    venv_python,
    wait_for_port,
    wrk,
)

EXPRESS_DIR = ROOT / "tests" / "express"
DEMO = {"email": "demo@campus.test", "password": "campus-demo"}
#: Production refuses the demo account: its user is made with `campus users add`.
PRODUCTION_USER = {"email": "bench@campus.test", "password": "bench-password-of-some-length"}
PRODUCTION_SECRET = "bench-secret-" + "x" * 40
EXPRESS_USER = {"email": "ann@campus.test", "password": "express-password"}
# Bare Tornado has no session; it gets a cookie of a campus cookie's size all the same.
BARE_COOKIE = 'campus.sid="' + "x" * 172 + '"'
# Commands that are the bench's own bookkeeping, or a client's connection set-up.
NOT_PER_REQUEST = {"info", "config", "ping", "client", "hello", "select", "echo", "monitor"}
NOT_PER_REQUEST |= {"command", "script"}
#: Requests counted one by one for the per-request counts (store commands, log lines).
COUNTED = 400


@dataclass(frozen=True)
class Spec:
    """One target: what runs, on which store, in how many processes."""

    name: str
    kind: str  # bare | campus | express | aiohttp
    store: str | None = None  # memory | redis
    processes: int = 1
    env: str = "development"  # campus's CAMPUS_ENV
    without: str = ""  # campus with this layer taken out (bench/layers.py)
    checkout: str = ""  # campus from another checkout (before/after in one run)

    @property
    def cookie_name(self) -> str:
        return {"campus": "campus.sid", "express": "connect.sid", "aiohttp": "aiohttp.sid"}[
            self.kind
        ]


PER_CORE = [
    Spec("bare", "bare"),
    Spec("campus-memory", "campus", "memory"),
    Spec("campus-redis", "campus", "redis"),
    Spec("campus-memory-prod", "campus", "memory", env="production"),
    Spec("campus-redis-prod", "campus", "redis", env="production"),
    Spec("express-memory", "express", "memory"),
    Spec("express-redis", "express", "redis"),
    Spec("aiohttp-redis", "aiohttp", "redis"),
]
DESCRIPTIONS = {
    "bare": "bare Tornado, no session, no logging (the ceiling)",
    "campus-memory": "campus in development, memory store, access log on",
    "campus-redis": "campus in development, Redis store set, access log on",
    "campus-memory-prod": "campus in production (its defaults), memory store set",
    "campus-redis-prod": "campus in production as shipped (Redis), access log on",
    "campus-memory-prod-base": "the same, from the checkout given with --base (before)",
    "campus-redis-prod-base": "the same, from the checkout given with --base (before)",
    "express-memory": "tests/express: express-session, its MemoryStore",
    "express-redis": "tests/express: express-session + connect-redis",
    "aiohttp-redis": "aiohttp + aiohttp-session RedisStorage (redis-py)",
}


@dataclass
class Target:
    spec: Spec
    samples: list[Sample] = field(default_factory=list)

    def median(self, attribute: str) -> float | None:
        values = [getattr(s, attribute) for s in self.samples]
        values = [v for v in values if v is not None]
        return statistics.median(values) if values else None

    def summary(self) -> dict[str, Any]:
        names = sorted({name for s in self.samples for name in s.store_commands})
        requests = sum(s.requests for s in self.samples) or 1
        return {
            "description": DESCRIPTIONS.get(self.spec.name, self.spec.name),
            "processes": self.spec.processes,
            "rps": self.median("rps"),
            "p50_ms": self.median("p50_ms"),
            "p99_ms": self.median("p99_ms"),
            "cpu_us_per_request": self.median("cpu_us_per_request"),
            "rss_mib": (self.median("rss_kib") or 0) / 1024,
            "store_commands_per_request": self.median("store_commands_per_request"),
            "store_commands": {
                name: sum(s.store_commands.get(name, 0) for s in self.samples) / requests
                for name in names
            },
            "log_lines_per_request": self.median("log_lines_per_request"),
            "samples": [asdict(s) for s in self.samples],
        }


@dataclass
class Settings:
    rounds: int
    duration: float
    warmup: float
    connections: int
    uvloop: bool


class Bench:
    """Starts one target at a time; owns the redis-server the Redis targets share."""

    def __init__(self, uvloop: bool) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="campus-bench-"))
        self.redis_port = free_port()
        self.redis = subprocess.Popen(
            [
                *("taskset", "-c", LOAD_CPU, "redis-server", "--port", str(self.redis_port)),
                *(
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(self.tmp),
                ),
            ],
            stdout=subprocess.DEVNULL,
        )
        wait_for_port(self.redis_port, self.redis)
        self.client = redis.Redis(port=self.redis_port)
        self.redis_url = f"redis://127.0.0.1:{self.redis_port}/0"
        self.uvloop = uvloop
        self.aiohttp_python: Path | None = None
        self._production_users: Path | None = None

    def production_users(self) -> Path:
        """A users file for production (which refuses the demo account), made once."""
        if self._production_users is None:
            path = self.tmp / "users.json"
            env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPUS_")}
            env |= {"PYTHONPATH": str(ROOT), "CAMPUS_ENV": "production"}
            env["CAMPUS_USERS_FILE"] = str(path)
            result = subprocess.run(
                [
                    *(sys.executable, "-m", "campus", "users", "add", PRODUCTION_USER["email"]),
                    *("--name", "Bench Student", "--role", "student", "--password-stdin"),
                ],
                input=PRODUCTION_USER["password"] + "\n",
                capture_output=True,
                text=True,
                env=env,
                cwd=ROOT,
            )
            if result.returncode != 0:
                raise BenchError(f"campus users add failed: {result.stderr.strip()}")
            self._production_users = path
        return self._production_users

    # --- starting targets --------------------------------------------------------------

    def command(self, spec: Spec, port: int) -> tuple[list[str], dict[str, str], Path]:
        """argv, environment and working directory of a target."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CAMPUS_", "NODE_"))}
        python = [sys.executable]
        if self.uvloop:
            python += [str(BENCH / "with_uvloop.py")]
        if spec.kind == "bare":
            env["PYTHONPATH"] = str(ROOT)
            if spec.name.endswith("-uvloop") and not self.uvloop:
                python += [str(BENCH / "with_uvloop.py")]
            return [*python, str(BENCH / "bare.py"), str(port)], env, ROOT
        if spec.kind == "campus":
            checkout = Path(spec.checkout) if spec.checkout else ROOT
            # This checkout (or the one named), never an installed copy of campus.
            env["PYTHONPATH"] = str(checkout)
            env["CAMPUS_USERS_FILE"] = str(ROOT / "config" / "users.dev.json")
            if spec.env == "production":  # its config file and defaults; a real secret
                env["CAMPUS_ENV"] = "production"
                env["CAMPUS_SESSION_SECRET"] = PRODUCTION_SECRET
                env["CAMPUS_USERS_FILE"] = str(self.production_users())
            if spec.store is not None:
                env["CAMPUS_STORE"] = spec.store
            if spec.store == "redis":
                env["CAMPUS_REDIS_URL"] = self.redis_url
            if spec.processes != 1:
                env["CAMPUS_SERVER_PROCESSES"] = str(spec.processes)
            if spec.without:
                script = [str(BENCH / "layers.py"), spec.without]
                return [*python, *script, "--port", str(port)], env, checkout
            return [*python, "-m", "campus", "--port", str(port)], env, checkout
        if spec.kind == "express":
            env |= {"NODE_ENV": "production", "PORT": str(port), "STORE": spec.store or ""}
            env |= {"REDIS_URL": self.redis_url, "WORKERS": str(spec.processes)}
            return ["node", "app.js"], env, EXPRESS_DIR
        if spec.kind == "aiohttp":
            if self.aiohttp_python is None:
                self.aiohttp_python = venv_python()
            argv = [str(self.aiohttp_python), str(BENCH / "aiohttp_app.py"), str(port)]
            return [*argv, self.redis_url], env, ROOT
        raise ValueError(spec.kind)

    def start(
        self, spec: Spec, *, pinned: bool, wait_all: bool = True
    ) -> tuple[subprocess.Popen[bytes], int, Path]:
        port = free_port()
        command, env, cwd = self.command(spec, port)
        if pinned:
            command = ["taskset", "-c", SERVER_CPU, *command]
        log = self.tmp / f"{spec.name}-{spec.processes}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=out)
        try:
            wait_for_port(port, process)
            if wait_all and spec.kind == "express":  # a cluster: until every worker listens
                self._wait_for_line(log, b"listening on", process)
            if wait_all and spec.kind == "campus" and spec.processes > 1:
                self._wait_for_listeners(process, port, spec.processes)
        except BaseException as exc:
            stop(process)
            if isinstance(exc, BenchError):
                tail = log.read_text(errors="replace").strip().splitlines()[-3:]
                message = f"{spec.name}: {exc}; its output ends: {' | '.join(tail)}"
                raise BenchError(message) from None
            raise
        return process, port, log

    @staticmethod
    def _wait_for_line(log: Path, text: bytes, process: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + 20
        while text not in log.read_bytes():
            if process.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"never printed {text.decode()!r}")
            time.sleep(0.05)

    @staticmethod
    def _wait_for_listeners(process: subprocess.Popen[bytes], port: int, count: int) -> None:
        deadline = time.monotonic() + 20
        while len(listening_pids(process.pid, port)) < count:
            if process.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"fewer than {count} processes listen on {port}")
            time.sleep(0.1)

    # --- measuring ---------------------------------------------------------------------

    def session_cookie(self, spec: Spec, port: int) -> str:
        if spec.kind == "bare":
            return BARE_COOKIE
        body = EXPRESS_USER if spec.kind == "express" else DEMO
        if spec.kind == "campus" and spec.env == "production":
            body = PRODUCTION_USER
        cookie = login(port, body, spec.cookie_name)
        for _ in range(4):  # a live session, whichever process answers
            status, answer = get(port, "/api/me", cookie)
            if status != 200 or b'"user"' not in answer:
                raise BenchError(f"{spec.name}: GET /api/me with its session answered {status}")
        return cookie

    def commands(self) -> dict[str, int]:
        stats = self.client.info("commandstats")
        calls = {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}
        return {k: n for k, n in calls.items() if k.split("|")[0] not in NOT_PER_REQUEST}

    def measure(self, spec: Spec, settings: Settings, *, pinned: bool) -> Sample:
        """Warm up, then wrk for the figures; then an exact count of requests for the counts."""
        process, port, log = self.start(spec, pinned=pinned)
        try:
            cookie = self.session_cookie(spec, port)
            url = f"http://127.0.0.1:{port}/api/me"
            load_cpu = LOAD_CPU if pinned else None
            wrk(url, cookie, settings.warmup, settings.connections, cpu=load_cpu)
            cpu_before = cpu_seconds(process.pid)
            sample = wrk(url, cookie, settings.duration, settings.connections, cpu=load_cpu)
            cpu = cpu_seconds(process.pid) - cpu_before
            sample.rss_kib = rss_kib(process.pid)
            sample.load_average = load_average()[0]
            time.sleep(0.2)  # what wrk left in flight is answered (and logged) by now
            self.client.config_resetstat()
            log_offset = log.stat().st_size
            exactly(port, "/api/me", cookie, COUNTED)
            time.sleep(0.1)  # the last line is written by now
            with log.open("rb") as lines:
                lines.seek(log_offset)
                sample.log_lines_per_request = lines.read().count(b"\n") / COUNTED
        finally:
            stop(process)
        sample.cpu_us_per_request = cpu * 1e6 / sample.requests
        if spec.store == "redis":
            sample.store_commands = self.commands()
            sample.store_commands_per_request = sum(sample.store_commands.values()) / COUNTED
        return sample

    def campus_processes(self, count: int) -> tuple[bool, str]:
        """Does campus run *count* processes on one port with ``[server] processes``?"""
        spec = Spec(f"campus-redis-x{count}-probe", "campus", "redis", count, env="production")
        try:
            process, port, _ = self.start(spec, pinned=False, wait_all=False)
        except BenchError as exc:
            return False, f"not supported yet: campus refused processes = {count} ({exc})"
        try:
            deadline = time.monotonic() + 5
            holders = listening_pids(process.pid, port)
            while len(holders) < count and time.monotonic() < deadline:
                time.sleep(0.2)
                holders = listening_pids(process.pid, port)
        finally:
            stop(process)
        if len(holders) >= count:
            return True, f"[server] processes = {count}: {len(holders)} processes share the port"
        return False, (
            f"not supported yet: with [server] processes = {count} campus ran "
            f"{len(holders)} process on the port (the key is not wired to the server)"
        )

    def campus_route_costs(self) -> dict[str, float]:
        """Commands campus itself sends per /login, /api/me and /logout (MONITOR, mean of 20)."""
        process, port, _ = self.start(Spec("campus-redis", "campus", "redis"), pinned=False)
        costs: dict[str, float] = {}
        try:
            n = 20
            login(port, DEMO, "campus.sid")  # loads the Lua scripts (SCRIPT LOAD) once
            with ClientCommands(self.redis_port) as sent:
                cookies = [login(port, DEMO, "campus.sid") for _ in range(n)]
            costs["POST /login"] = sent.total() / n
            with ClientCommands(self.redis_port) as sent:
                for cookie in cookies:
                    get(port, "/api/me", cookie)
            costs["GET /api/me"] = sent.total() / n
            with ClientCommands(self.redis_port) as sent:
                for cookie in cookies:
                    get(port, "/logout", cookie)
            costs["GET /logout"] = sent.total() / n
        finally:
            stop(process)
        return costs

    def close(self) -> None:
        self.client.close()
        stop(self.redis)
        shutil.rmtree(self.tmp, ignore_errors=True)


class ClientCommands:
    """Counts the commands clients send (MONITOR), leaving out those a Lua script runs inside.

    INFO commandstats counts a script's inner GET/SET too; what a request costs in round trips
    is what its client sends.
    """

    STOP = "campus-bench-stop"

    def __init__(self, port: int) -> None:
        self.port = port
        self.counts: dict[str, int] = {}
        self._thread: threading.Thread | None = None

    def __enter__(self) -> ClientCommands:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._listen, args=(ready,), daemon=True)
        self._thread.start()
        ready.wait(5)
        return self

    def _listen(self, ready: threading.Event) -> None:
        with redis.Redis(port=self.port).monitor() as monitor:
            ready.set()
            for entry in monitor.listen():
                command = str(entry["command"])
                if command.endswith(self.STOP):
                    return
                if entry.get("client_type") == "lua":
                    continue
                name = command.split(" ", 1)[0].upper()
                self.counts[name] = self.counts.get(name, 0) + 1

    def __exit__(self, *exc: object) -> None:
        redis.Redis(port=self.port).echo(self.STOP)
        assert self._thread is not None
        self._thread.join(5)

    def total(self) -> int:
        return sum(n for name, n in self.counts.items() if name not in {"ECHO", "CLIENT", "HELLO"})

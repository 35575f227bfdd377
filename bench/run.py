"""What the session layer costs per request: bare Tornado vs campus (memory) vs campus (Redis).

Each target runs alone, on a free port, pinned to CPU 0 while wrk runs pinned to CPU 1.
Rounds are interleaved (bare, memory, redis, bare, ...) so drift on a shared machine hits all
targets alike; medians are reported and ratios are taken against the ceiling of the same run.

    python bench/run.py                 # 5 rounds of 5 s each, table + bench/results.json
    python bench/run.py --rounds 3 --duration 3 --uvloop
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parent.parent
DEMO = {"email": "demo@campus.test", "password": "campus-demo"}
SERVER_CPU, LOAD_CPU = "0", "1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (robust to a noisy neighbour, unlike req/s)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@dataclass
class Sample:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    redis_per_request: float | None = None
    rss_kib: int = 0
    cpu_us_per_request: float = 0.0


@dataclass
class Target:
    name: str
    samples: list[Sample] = field(default_factory=list)

    def median(self, attribute: str) -> float | None:
        values = [getattr(s, attribute) for s in self.samples if getattr(s, attribute) is not None]
        return statistics.median(values) if values else None


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


def wrk(url: str, cookie: str | None, duration: int, connections: int) -> Sample:
    command = ["taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{connections}", f"-d{duration}s"]
    command += ["--latency", "--timeout", "5s"]
    if cookie:
        command += ["-H", f"Cookie: campus.sid={cookie}"]
    output = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", output).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", output).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non_2xx:
        raise RuntimeError(f"{url}: {non_2xx.group(1)} failed responses\n{output}")
    return Sample(rps, p50, p99, requests)


def login(port: int) -> tuple[str, dict[str, Any]]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/login", data=json.dumps(DEMO).encode(), method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        body = json.loads(response.read())
        header = response.headers["Set-Cookie"]
    cookie = header.split(";", 1)[0].split("=", 1)[1].strip('"')
    return cookie, body


def get(port: int, path: str, cookie: str) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", headers={"Cookie": f"campus.sid={cookie}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return int(response.status)


def command_calls(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return sum(
        int(v["calls"])
        for k, v in stats.items()
        if not k.startswith(("cmdstat_info", "cmdstat_config", "cmdstat_ping"))
    )


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


class Servers:
    """Starts one target at a time; owns the redis-server the Redis target uses."""

    def __init__(self, uvloop: bool) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="campus-bench-"))
        self.redis_port = free_port()
        self.redis = subprocess.Popen(
            [
                "taskset",
                "-c",
                LOAD_CPU,
                "redis-server",
                "--port",
                str(self.redis_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.tmp),
            ],
            stdout=subprocess.DEVNULL,
        )
        wait_for_port(self.redis_port, self.redis)
        self.redis_client = redis.Redis(port=self.redis_port)
        self.uvloop = uvloop

    def command(self, target: str, port: int) -> tuple[list[str], dict[str, str]]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPUS_")}
        env["PYTHONPATH"] = str(ROOT)  # this checkout, never an installed copy of campus
        python = [sys.executable]
        if self.uvloop:
            python += [str(ROOT / "bench" / "with_uvloop.py")]
        if target == "bare":
            return [*python, str(ROOT / "bench" / "bare.py"), str(port)], env
        env["CAMPUS_USERS_FILE"] = str(ROOT / "config" / "users.dev.json")
        if target == "redis":
            env["CAMPUS_STORE"] = "redis"
            env["CAMPUS_REDIS_URL"] = f"redis://127.0.0.1:{self.redis_port}/0"
        return [*python, "-m", "campus", "--port", str(port)], env

    def measure(self, target: str, duration: int, connections: int) -> Sample:
        port = free_port()
        command, env = self.command(target, port)
        process = subprocess.Popen(
            ["taskset", "-c", SERVER_CPU, *command],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for_port(port, process)
            cookie = None
            if target != "bare":
                cookie, _ = login(port)
                assert get(port, "/api/me", cookie) == 200
            wrk(f"http://127.0.0.1:{port}/api/me", cookie, 1, connections)  # warm up
            if target == "redis":
                self.redis_client.config_resetstat()
            cpu_before = cpu_seconds(process.pid)
            sample = wrk(f"http://127.0.0.1:{port}/api/me", cookie, duration, connections)
            cpu = cpu_seconds(process.pid) - cpu_before
            sample.cpu_us_per_request = cpu * 1e6 / sample.requests
            if target == "redis":  # wrk's warm-up is excluded: stats were reset after it
                sample.redis_per_request = command_calls(self.redis_client) / sample.requests
            sample.rss_kib = rss_kib(process.pid)
            return sample
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(15)

    def redis_costs(self) -> dict[str, float]:
        """Commands campus sends Redis per /login, /api/me and /logout (mean of 20 each)."""
        port = free_port()
        command, env = self.command("redis", port)
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        costs: dict[str, float] = {}
        try:
            wait_for_port(port, process)
            n = 20
            login(port)  # the first write loads the Lua scripts (SCRIPT LOAD): not per request
            with ClientCommands(self.redis_port) as commands:
                cookies = [login(port)[0] for _ in range(n)]
            costs["login"] = commands.total() / n
            with ClientCommands(self.redis_port) as commands:
                for cookie in cookies:
                    get(port, "/api/me", cookie)
            costs["me"] = commands.total() / n
            with ClientCommands(self.redis_port) as commands:
                for cookie in cookies:
                    get(port, "/logout", cookie)
            costs["logout"] = commands.total() / n
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(15)
        return costs

    def close(self) -> None:
        self.redis.terminate()
        self.redis.wait(10)
        shutil.rmtree(self.tmp, ignore_errors=True)


def table(targets: list[Target]) -> str:
    ceiling = targets[0].median("rps") or 1.0
    lines = [
        f"{'target':<14}{'req/s':>9}{'of bare':>9}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'redis cmd/req':>15}{'RSS MiB':>9}{'CPU us/req':>12}{'bare/this CPU':>15}",
    ]
    bare_cpu = targets[0].median("cpu_us_per_request") or 1.0
    for target in targets:
        rps = target.median("rps") or 0.0
        commands = target.median("redis_per_request")
        per_request = f"{commands:.3f}" if commands is not None else "-"
        cpu = target.median("cpu_us_per_request") or 1.0
        lines.append(
            f"{target.name:<14}{rps:>9.0f}{rps / ceiling:>9.0%}{target.median('p50_ms'):>9.2f}"
            f"{target.median('p99_ms'):>9.2f}{per_request:>15}"
            f"{(target.median('rss_kib') or 0) / 1024:>9.1f}{cpu:>12.0f}{bare_cpu / cpu:>15.0%}"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--uvloop", action="store_true", help="run every server on uvloop")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results.json")
    args = parser.parse_args()
    for tool in ("wrk", "taskset", "redis-server"):
        if shutil.which(tool) is None:
            parser.error(f"{tool} is not installed (Debian: apt-get install {tool})")

    names = ["bare", "campus-memory", "campus-redis"]
    targets = [Target(name) for name in names]
    servers = Servers(args.uvloop)
    try:
        for round_ in range(args.rounds):
            for target, kind in zip(targets, ["bare", "memory", "redis"], strict=True):
                target.samples.append(servers.measure(kind, args.duration, args.connections))
            print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr)
        costs = servers.redis_costs()
    finally:
        servers.close()

    print(table(targets))
    ceiling = targets[0].median("rps") or 1.0
    print(
        f"redis commands: login {costs['login']:.2f}, /api/me {costs['me']:.2f}, "
        f"logout {costs['logout']:.2f}"
    )
    report = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "uvloop": args.uvloop,
        },
        "settings": vars(args) | {"json": str(args.json)},
        "targets": {
            t.name: {
                "rps": t.median("rps"),
                "ratio_to_bare": (t.median("rps") or 0) / ceiling,
                "p50_ms": t.median("p50_ms"),
                "p99_ms": t.median("p99_ms"),
                "rss_kib": t.median("rss_kib"),
                "cpu_us_per_request": t.median("cpu_us_per_request"),
                "redis_commands_per_request": t.median("redis_per_request"),
                "samples": [asdict(s) for s in t.samples],
            }
            for t in targets
        },
        "redis_commands_per_route": costs,
    }
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

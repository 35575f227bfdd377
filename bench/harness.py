"""What every benchmark here shares: free ports, wrk, process CPU and memory, logging in.

Servers are measured as process trees (a node cluster's primary and workers, campus's worker
processes): CPU time and RSS are summed over the tree.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
SERVER_CPU, LOAD_CPU = "0", "1"

VENV = BENCH / ".venv"
VENV_REQUIREMENTS = BENCH / "requirements.txt"


class BenchError(Exception):
    """A benchmark that cannot go on; str() is one line for stderr."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[Any], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"server exited with {process.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise BenchError(f"nothing listening on {port} after {timeout:.0f}s")


# --- processes ---------------------------------------------------------------------------


def tree(pid: int) -> list[int]:
    """The process and all its descendants (those alive now)."""
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                todo += [int(child) for child in (task / "children").read_text().split()]
            except OSError:
                continue
    return pids


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process tree so far (steadier than req/s on a busy machine)."""
    total = 0.0
    for member in tree(pid):
        try:
            stat = Path(f"/proc/{member}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def rss_kib(pid: int) -> int:
    """Resident memory of a process tree."""
    total = 0
    for member in tree(pid):
        try:
            status = Path(f"/proc/{member}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def listening_pids(pid: int, port: int) -> set[int]:
    """Which processes of the tree hold a listening TCP socket on *port* (shared or their own)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            columns = line.split()
            if int(columns[1].rsplit(":", 1)[1], 16) == port and columns[3] == "0A":
                inodes.add(columns[9])
    holders = set()
    for member in tree(pid):
        try:
            fds = list(Path(f"/proc/{member}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in inodes:
                holders.add(member)
                break
    return holders


def start_campus(root: Path, port: int, **settings: str) -> subprocess.Popen[bytes]:
    """``python -m campus`` of the checkout *root* on *port*, with these ``CAMPUS_`` settings
    and none of the environment's; returns once it listens (else stops it: BenchError)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("CAMPUS_")}
    env.update(settings, PYTHONPATH=str(root))
    process = subprocess.Popen(
        [sys.executable, "-m", "campus", "--port", str(port)],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, process, timeout=30)
    except BaseException:
        stop(process)
        raise
    return process


def stop(process: subprocess.Popen[Any], timeout: float = 15) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)


# --- wrk ---------------------------------------------------------------------------------


@dataclass
class Sample:
    """One wrk run against one server."""

    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    cpu_us_per_request: float | None = None
    rss_kib: int | None = None
    store_commands_per_request: float | None = None
    store_commands: dict[str, int] = field(default_factory=dict)
    log_lines_per_request: float | None = None
    load_average: float | None = None  # the machine's 1-minute load average right after


def load_average() -> list[float]:
    """The machine's 1, 5 and 15-minute load averages (others' work shows here)."""
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if match is None:
        raise BenchError(f"wrk printed a latency I cannot read: {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _find(pattern: str, output: str) -> str:
    match = re.search(pattern, output)
    if match is None:
        raise BenchError(f"wrk's output has no {pattern!r}:\n{output}")
    return match.group(1)


def wrk(
    url: str,
    cookie: str | None,
    duration: float,
    connections: int,
    *,
    cpu: str | None = LOAD_CPU,
    script: Path | None = None,
) -> Sample:
    """``wrk -t1 -cN`` for *duration* seconds; any non-2xx answer is an error, not a number."""
    command = ["taskset", "-c", cpu] if cpu is not None else []
    command += ["wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", "--latency"]
    command += ["--timeout", "5s"]
    if cookie:
        command += ["-H", f"Cookie: {cookie}"]
    if script:
        command += ["-s", str(script)]
    result = subprocess.run([*command, url], capture_output=True, text=True)
    if result.returncode != 0:
        raise BenchError(f"wrk failed ({result.returncode}): {result.stderr.strip()}")
    output = result.stdout
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non_2xx:
        raise BenchError(f"{url}: {non_2xx.group(1)} failed responses\n{output}")
    errors = re.search(r"Socket errors: (.*)", output)
    if errors and re.search(r"(connect|read|write|timeout) [1-9]", errors.group(1)):
        raise BenchError(f"{url}: socket errors ({errors.group(1)})\n{output}")
    return Sample(
        rps=float(_find(r"Requests/sec:\s+([\d.]+)", output)),
        p50_ms=_ms(_find(r"\s50%\s+(\S+)", output)),
        p99_ms=_ms(_find(r"\s99%\s+(\S+)", output)),
        requests=int(_find(r"(\d+) requests in", output)),
    )


# --- HTTP --------------------------------------------------------------------------------


def login(port: int, body: dict[str, str], cookie_name: str) -> str:
    """POST /login; the ``name=value`` Cookie header the session cookie it set calls for."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/login",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            headers = response.headers.get_all("Set-Cookie") or []
    except urllib.error.HTTPError as exc:
        raise BenchError(f"POST /login on port {port} answered {exc.code}") from exc
    for header in headers:
        cookie: SimpleCookie = SimpleCookie()
        cookie.load(header)
        if cookie_name in cookie:
            # As the browser sends it back: the raw value, quotes and URL-encoding kept.
            raw = header.split(";", 1)[0].split("=", 1)[1]
            return f"{cookie_name}={raw}"
    raise BenchError(f"POST /login on port {port} set no {cookie_name} cookie")


def exactly(port: int, path: str, cookie: str, count: int, connections: int = 8) -> None:
    """*count* GETs over *connections* keep-alive connections, every one answered 200.

    wrk stops at a deadline, with requests in flight that the server still answers but wrk
    does not count; per-request counts (store commands, log lines) need an exact number.
    """
    failures: list[str] = []

    def client(share: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            for _ in range(share):
                connection.request("GET", path, headers={"Cookie": cookie})
                response = connection.getresponse()
                response.read()
                if response.status != 200:
                    failures.append(f"GET {path} answered {response.status}")
                    return
        except OSError as exc:
            failures.append(f"GET {path}: {exc}")
        finally:
            connection.close()

    shares = [count // connections + (i < count % connections) for i in range(connections)]
    threads = [threading.Thread(target=client, args=(share,)) for share in shares]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise BenchError(failures[0])


def get(port: int, path: str, cookie: str) -> tuple[int, bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Cookie": cookie})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


# --- the bench's own virtualenv ----------------------------------------------------------


def venv_python() -> Path:
    """bench/.venv's Python, made (or brought up to bench/requirements.txt) on first use."""
    python = VENV / "bin" / "python"
    stamp = VENV / "requirements.sha256"
    wanted = hashlib.sha256(VENV_REQUIREMENTS.read_bytes()).hexdigest()
    if python.exists() and stamp.exists() and stamp.read_text().strip() == wanted:
        return python
    print(f"setting up {VENV} from {VENV_REQUIREMENTS.name} (once)", file=sys.stderr)
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    result = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "-r", str(VENV_REQUIREMENTS)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        lines = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
        raise BenchError(f"pip could not install {VENV_REQUIREMENTS}: {' '.join(lines[:2])}")
    stamp.write_text(wanted + "\n")
    return python


def require_tools(*tools: str) -> None:
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        raise BenchError(
            f"not on PATH: {', '.join(missing)} (Debian: apt-get install wrk redis-server "
            "nodejs npm util-linux)"
        )

"""What the access log and /metrics cost: GET /api/me with each turned on and off, one run.

Three variants of campus (memory store) run in interleaved rounds, each pinned to CPU 0 with
`wrk -t1 -c32` pinned to CPU 1, the server's stderr a pipe read on CPU 1 (as journald would):

    quiet       [log] access = false, [metrics] enabled = false
    logged      access lines on, metrics off
    shipped     access lines on, metrics on (the defaults)

It prints medians and the two ratios that matter: logged/quiet (what the access line costs)
and shipped/logged (what metrics cost); both should stay at or above 0.95.

    python bench/logcost.py                       # 5 rounds of 5 s
    python bench/logcost.py --rounds 3 --checkout /tmp/old   # another checkout (before/after)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO = {"email": "demo@campus.test", "password": "campus-demo"}
VARIANTS = {
    "quiet": {"CAMPUS_LOG_ACCESS": "false", "CAMPUS_METRICS_ENABLED": "false"},
    "logged": {"CAMPUS_LOG_ACCESS": "true", "CAMPUS_METRICS_ENABLED": "false"},
    "shipped": {},
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def login(port: int) -> str:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/login", data=json.dumps(DEMO).encode(), method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return str(response.headers["Set-Cookie"].split(";", 1)[0])


def wrk(port: int, cookie: str, seconds: int) -> tuple[float, int]:
    command = ["taskset", "-c", "1", "wrk", "-t1", "-c32", f"-d{seconds}s"]
    command += ["-H", f"Cookie: {cookie}"]
    output = subprocess.run(
        [*command, f"http://127.0.0.1:{port}/api/me"], capture_output=True, text=True, check=True
    ).stdout
    if "Non-2xx" in output:
        raise RuntimeError(output)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    return rps, total


def measure(checkout: Path, variant: str, seconds: int) -> dict[str, float]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPUS_")}
    env |= {"PYTHONPATH": str(checkout), **VARIANTS[variant]}
    env["CAMPUS_USERS_FILE"] = str(checkout / "config" / "users.dev.json")
    process = subprocess.Popen(
        ["taskset", "-c", "0", sys.executable, "-m", "campus", "--port", str(port)],
        cwd=checkout,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    lines = [0]

    def drain() -> None:  # the reader at the other end of the pipe, like journald
        assert process.stdout is not None
        for _ in process.stdout:
            lines[0] += 1

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                cookie = login(port)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        wrk(port, cookie, 1)  # warm-up
        before = cpu_seconds(process.pid)
        rps, total = wrk(port, cookie, seconds)
        cpu_us = (cpu_seconds(process.pid) - before) * 1e6 / total
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(20)
        reader.join(10)
    return {"rps": rps, "cpu_us": cpu_us, "lines": lines[0]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--checkout", type=Path, default=ROOT, help="the campus checkout to run")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args()
    os.sched_setaffinity(0, {1})  # this script and its pipe reader stay off the server's CPU
    names = args.variants.split(",")
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    for round_ in range(args.rounds):
        for name in names:
            samples[name].append(measure(args.checkout, name, args.duration))
        print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr)
    medians = {
        name: {key: statistics.median(s[key] for s in runs) for key in ("rps", "cpu_us")}
        for name, runs in samples.items()
    }
    print(f"checkout: {args.checkout}")
    print(f"{'variant':<10}{'req/s':>9}{'CPU us/req':>12}  rounds (req/s)")
    for name, median in medians.items():
        rounds = " ".join(f"{s['rps']:.0f}" for s in samples[name])
        print(f"{name:<10}{median['rps']:>9.0f}{median['cpu_us']:>12.0f}  {rounds}")
    for a, b, what in (("logged", "quiet", "access log"), ("shipped", "logged", "metrics")):
        if a in medians and b in medians:
            ratio = medians[a]["rps"] / medians[b]["rps"]
            cpu = medians[b]["cpu_us"] / medians[a]["cpu_us"]
            print(f"{what}: {a}/{b} = {ratio:.3f} req/s, {cpu:.3f} by CPU per request")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

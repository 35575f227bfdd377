"""What the access log and /metrics cost: GET /api/me with each turned on and off, one run.

Three variants of campus (memory store) run in interleaved rounds, each pinned to CPU 0 with
`wrk -t1 -c32` pinned to CPU 1, the server's stderr a pipe read on CPU 1 (as journald would):

    quiet       [log] access = false, [metrics] enabled = false
    logged      access lines on, metrics off
    shipped     access lines on, metrics on (the defaults)

It prints medians and the two ratios that matter: logged/quiet (what the access line costs)
and shipped/logged (what metrics cost); both should stay at or above 0.95. Beside req/s it
reports the server's CPU time per request and its write() system calls per request (from
/proc/PID/io: exact, whatever the neighbours do). On a busy machine req/s swings; then
``--instructions`` runs each variant once under valgrind's callgrind and counts the
server's instructions per request over 2,000 requests (user space only, immune to noise).

    python bench/logcost.py                       # 5 rounds of 5 s
    python bench/logcost.py --instructions        # instructions per request, ~5 minutes
    python bench/logcost.py --before /tmp/old     # and another checkout's, in the same rounds
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
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
from pathlib import Path

import argon2

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


def cheap_users() -> Path:
    """The demo account with cheap Argon2 parameters: the real ones (64 MiB, niced threads)
    take seconds on a busy machine and minutes under valgrind, and logins are not measured."""
    users = Path(tempfile.mkdtemp(prefix="campus-logcost-")) / "users.json"
    cheap = argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    record = {"email": DEMO["email"], "name": "Demo", "password_hash": cheap.hash(DEMO["password"])}
    users.write_text(json.dumps([record]))
    return users


def write_calls(pid: int) -> int:
    """write()-family system calls the process made so far (sends on sockets not included)."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("syscw:"):
            return int(line.split()[1])
    return 0


def login(port: int, timeout: float = 10) -> str:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/login", data=json.dumps(DEMO).encode(), method="POST"
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
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
    users = cheap_users()
    env["CAMPUS_USERS_FILE"] = str(users)
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
        fd = process.stdout.fileno()
        while chunk := os.read(fd, 1 << 16):  # big reads: the reader must not be the limit
            lines[0] += chunk.count(b"\n")

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
        before, writes = cpu_seconds(process.pid), write_calls(process.pid)
        rps, total = wrk(port, cookie, seconds)
        cpu_us = (cpu_seconds(process.pid) - before) * 1e6 / total
        writes_per_request = (write_calls(process.pid) - writes) / total
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(20)
        reader.join(10)
        shutil.rmtree(users.parent, ignore_errors=True)
    return {"rps": rps, "cpu_us": cpu_us, "writes": writes_per_request, "lines": lines[0]}


def instructions(checkout: Path, variant: str, requests: int = 2000) -> float:
    """Instructions the server runs per GET /api/me, counted by callgrind after a warm-up."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPUS_")}
    env |= {"PYTHONPATH": str(checkout), **VARIANTS[variant]}
    env["PYTHONHASHSEED"] = "0"  # the same dict layouts in every run: counts comparable
    users = cheap_users()
    env["CAMPUS_USERS_FILE"] = str(users)
    out = Path(f"/tmp/campus-logcost-{os.getpid()}-{variant}.callgrind")
    command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
    process = subprocess.Popen(
        [*command, sys.executable, "-m", "campus", "--port", str(port)],
        cwd=checkout,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                cookie = login(port, timeout=120)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        headers = {"Cookie": cookie}

        def run(n: int) -> None:
            for _ in range(n):
                connection.request("GET", "/api/me", headers=headers)
                response = connection.getresponse()
                response.read()
                assert response.status == 200

        run(200)  # warm-up
        subprocess.run(
            ["callgrind_control", "-z", str(process.pid)], check=True, capture_output=True
        )
        run(requests)
        subprocess.run(
            ["callgrind_control", "-d", str(process.pid)], check=True, capture_output=True
        )
        connection.close()
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(120)
    shutil.rmtree(users.parent, ignore_errors=True)
    # callgrind_control -d wrote OUT.1: the measured requests alone (counters were zeroed just
    # before them); OUT itself is the dump at exit (the shutdown).
    measured = out.with_name(out.name + ".1")
    total = None
    for line in measured.read_text(errors="replace").splitlines():
        if line.startswith(("summary:", "totals:")):
            total = int(line.split()[1])
            break
    for dump in out.parent.glob(out.name + "*"):
        dump.unlink()
    if total is None:
        raise RuntimeError(f"no totals in {measured}")
    return total / requests


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--checkout", type=Path, default=ROOT, help="the campus checkout to run")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--before", type=Path, help="also run quiet and logged from this checkout")
    parser.add_argument("--instructions", action="store_true", help="callgrind, not wrk")
    parser.add_argument("--requests", type=int, default=2000, help="measured, with --instructions")
    args = parser.parse_args()
    names = args.variants.split(",")
    if args.instructions:
        counts = {name: instructions(args.checkout, name, args.requests) for name in names}
        print(f"checkout: {args.checkout}")
        for name, count in counts.items():
            print(f"{name:<10}{count:>12,.0f} instructions per request")
        for a, b, what in (("logged", "quiet", "access log"), ("shipped", "logged", "metrics")):
            if a in counts and b in counts:
                print(f"{what}: {b}/{a} = {counts[b] / counts[a]:.3f} (instructions)")
        return 0
    os.sched_setaffinity(0, {1})  # this script and its pipe reader stay off the server's CPU
    runs = [(name, args.checkout, name) for name in names]
    if args.before is not None:  # the same variants of another checkout, in the same rounds
        runs += [(f"{name}@before", args.before, name) for name in names if name != "shipped"]
    samples: dict[str, list[dict[str, float]]] = {label: [] for label, _, _ in runs}
    for round_ in range(args.rounds):
        for label, checkout, name in runs:
            samples[label].append(measure(checkout, name, args.duration))
        print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr)
    keys = ("rps", "cpu_us", "writes")
    medians = {
        name: {key: statistics.median(s[key] for s in runs) for key in keys}
        for name, runs in samples.items()
    }
    print(f"checkout: {args.checkout}")
    print(f"{'variant':<10}{'req/s':>9}{'CPU us/req':>12}{'writes/req':>12}  rounds (req/s)")
    for name, median in medians.items():
        rounds = " ".join(f"{s['rps']:.0f}" for s in samples[name])
        row = f"{median['rps']:>9.0f}{median['cpu_us']:>12.0f}{median['writes']:>12.3f}"
        print(f"{name:<10}{row}  {rounds}")
    pairs = [("logged", "quiet", "access log"), ("shipped", "logged", "metrics")]
    pairs += [("logged@before", "quiet@before", "access log, before")]
    for a, b, what in pairs:
        if a in medians and b in medians:
            ratio = medians[a]["rps"] / medians[b]["rps"]
            cpu = medians[b]["cpu_us"] / medians[a]["cpu_us"]
            print(f"{what}: {a}/{b} = {ratio:.3f} req/s, {cpu:.3f} by CPU per request")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

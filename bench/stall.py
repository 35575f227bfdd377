"""Logins must not stall readers: /api/me p99 with and without 20 clients logging in.

    python bench/stall.py [--json FILE]

Argon2 (the demo account's real parameters: 64 MiB, 3 passes, 4 lanes) runs in a thread pool;
if it ran on the event loop, every reader would queue behind each ~50-100 ms hash. The login
throttle's limit is raised for the run, so every one of the 20 clients' logins is a real
password check (from one address, most would otherwise be refused before any hashing).
`python bench/run.py` runs this too and puts its figures in the same results file.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from harness import (
    BENCH,
    LOAD_CPU,
    ROOT,
    SERVER_CPU,
    BenchError,
    free_port,
    login,
    stop,
    wait_for_port,
    wrk,
)

DEMO = {"email": "demo@campus.test", "password": "campus-demo"}


def measure(duration: float = 8, readers: int = 8, logins: int = 20) -> dict[str, Any]:
    """campus (memory store, development settings) with and without a stream of logins."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPUS_")}
    env["PYTHONPATH"] = str(ROOT)
    # 20 clients on one address log in at once, as by design no real client does: room for
    # all of them in the login throttle, or most would be answered 429 without any Argon2.
    env["CAMPUS_LOGIN_MAX_FAILURES"] = "100000"
    port = free_port()
    server = subprocess.Popen(
        ["taskset", "-c", SERVER_CPU, sys.executable, "-m", "campus", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, server)
        cookie = login(port, DEMO, "campus.sid")
        url = f"http://127.0.0.1:{port}/api/me"
        wrk(url, cookie, 1, readers)  # warm up
        alone = wrk(url, cookie, duration, readers)
        load = ["taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{logins}", f"-d{duration + 2:g}s"]
        load += ["--timeout", "10s", "-s", str(BENCH / "login.lua")]
        logging_in = subprocess.Popen(
            [*load, f"http://127.0.0.1:{port}/login"],
            stdout=subprocess.PIPE,
            text=True,
        )
        busy = wrk(url, cookie, duration, readers)
        login_output = logging_in.communicate(timeout=duration + 30)[0]
    finally:
        stop(server)
    if "Requests/sec:" not in login_output or "Non-2xx" in login_output:
        raise BenchError(f"the login load failed:\n{login_output}")
    return {
        "alone": asdict(alone),
        "with_logins": asdict(busy),
        "readers": readers,
        "logins": logins,
        "logins_per_second": float(login_output.split("Requests/sec:")[1].split()[0]),
        "p99_ratio": busy.p99_ms / alone.p99_ms,
    }


def describe(result: dict[str, Any]) -> str:
    alone, busy = result["alone"], result["with_logins"]
    return (
        f"/api/me p99 alone {alone['p99_ms']:.2f} ms ({alone['rps']:.0f} req/s); with "
        f"{result['logins']} clients logging in ({result['logins_per_second']:.1f} logins/s): "
        f"{busy['p99_ms']:.2f} ms ({busy['rps']:.0f} req/s); ratio {result['p99_ratio']:.2f} "
        "(target <= 3)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=8)
    parser.add_argument("--readers", type=int, default=8)
    parser.add_argument("--logins", type=int, default=20)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    try:
        result = measure(args.duration, args.readers, args.logins)
    except BenchError as exc:
        print(f"stall.py: {exc}", file=sys.stderr)
        return 1
    print(describe(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

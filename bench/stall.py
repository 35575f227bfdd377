"""Logins must not stall readers: /api/me p99 with and without 20 clients logging in.

    python bench/stall.py

Argon2 (the demo account's real parameters: 64 MiB, 3 passes, 4 lanes) runs in a thread pool;
if it ran on the event loop, every reader would queue behind each ~50-100 ms hash.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
from pathlib import Path

from run import LOAD_CPU, ROOT, SERVER_CPU, free_port, login, wait_for_port, wrk


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--readers", type=int, default=8)
    parser.add_argument("--logins", type=int, default=20)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    port = free_port()
    server = subprocess.Popen(
        ["taskset", "-c", SERVER_CPU, sys.executable, "-m", "campus", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, server)
        cookie, _ = login(port)
        url = f"http://127.0.0.1:{port}/api/me"
        wrk(url, cookie, 1, args.readers)  # warm up
        alone = wrk(url, cookie, args.duration, args.readers)
        logins = subprocess.Popen(
            [
                "taskset",
                "-c",
                LOAD_CPU,
                "wrk",
                "-t1",
                f"-c{args.logins}",
                f"-d{args.duration + 2}s",
                "--timeout",
                "10s",
                "-s",
                str(ROOT / "bench" / "login.lua"),
                f"http://127.0.0.1:{port}/login",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        busy = wrk(url, cookie, args.duration, args.readers)
        login_output = logins.communicate(timeout=args.duration + 30)[0]
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(15)
    login_rate = float(login_output.split("Requests/sec:")[1].split()[0])
    ratio = busy.p99_ms / alone.p99_ms
    print(
        f"/api/me p99 alone {alone.p99_ms:.2f} ms ({alone.rps:.0f} req/s); with "
        f"{args.logins} clients logging in ({login_rate:.1f} logins/s): {busy.p99_ms:.2f} ms "
        f"({busy.rps:.0f} req/s); ratio {ratio:.2f} (target <= 3)"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "alone": vars(alone),
                    "with_logins": vars(busy),
                    "logins_per_second": login_rate,
                    "p99_ratio": ratio,
                },
                indent=2,
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""CPU instructions per request, counted by callgrind: a cost no noisy neighbour can move.

    python bench/instructions.py    # bare (asyncio, uvloop), campus-memory, -redis, aiohttp-redis
    python bench/instructions.py --only bare,campus-memory,campus-memory-nolog

Each Python target runs under `valgrind --tool=callgrind` with instrumentation off while it
starts, logs in and serves a warm-up; then instrumentation goes on for exactly N
`GET /api/me` requests (over 4 keep-alive connections) and off again, so the count is the
server's work for those N requests and nothing else (its idle waits cost no instructions).
Requests/s on a shared machine drift with the neighbours; this count does not, which makes it
the figure to compare a change by. `python bench/run.py` runs it too (skip: --no-extras).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from harness import (
    BENCH,
    SERVER_CPU,
    BenchError,
    exactly,
    free_port,
    require_tools,
    stop,
    wait_for_port,
)
from targets import Bench, Spec

TARGETS = {
    spec.name: spec
    for spec in (
        Spec("bare", "bare"),
        # campus runs on uvloop as shipped, bare Tornado on asyncio's loop: both ceilings.
        Spec("bare-uvloop", "bare"),
        Spec("campus-memory", "campus", "memory"),
        Spec("campus-redis", "campus", "redis"),
        Spec("campus-redis-prod", "campus", "redis", env="production"),
        Spec("aiohttp-redis", "aiohttp", "redis"),
    )
}
#: Levers measured on request (--only), not in every run: campus without its access log.
VARIANTS = {
    "campus-memory-nolog": Spec("campus-memory-nolog", "campus", "memory"),
    "campus-redis-nolog": Spec("campus-redis-nolog", "campus", "redis"),
}
#: Concurrent keep-alive connections: a few, so requests share loop turns as under load.
CONNECTIONS = 4


def control(pid: int, *options: str) -> None:
    result = subprocess.run(
        ["callgrind_control", *options, str(pid)], capture_output=True, text=True, timeout=60
    )
    if result.returncode != 0:
        raise BenchError(f"callgrind_control {' '.join(options)} failed: {result.stderr.strip()}")


def count(bench: Bench, spec: Spec, requests: int, warmup: int) -> float:
    """Instructions the target executes per GET /api/me (mean over *requests*)."""
    with tempfile.TemporaryDirectory(prefix="campus-callgrind-") as tmp:
        out = Path(tmp) / "callgrind.out"
        port = free_port()
        command, env, cwd = bench.command(spec, port)
        if spec.name.endswith("-nolog"):  # python -m campus -> python without_access_log.py
            at = command.index("-m")
            command[at : at + 2] = [str(BENCH / "without_access_log.py")]
        valgrind = ["valgrind", "--tool=callgrind", "--instr-atstart=no"]
        valgrind += [f"--callgrind-out-file={out}", "--trace-children=no"]
        process = subprocess.Popen(
            ["taskset", "-c", SERVER_CPU, *valgrind, *command],
            cwd=cwd,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for_port(port, process, timeout=180)
            cookie = bench.session_cookie(spec, port)
            exactly(port, "/api/me", cookie, warmup, connections=CONNECTIONS)
            control(process.pid, "--instr=on")
            exactly(port, "/api/me", cookie, requests, connections=CONNECTIONS)
            control(process.pid, "--instr=off")
        finally:
            stop(process, timeout=60)
        text = out.read_text(errors="replace") if out.exists() else ""
    match = re.search(r"^totals: (\d+)", text, re.MULTILINE)
    if match is None:
        raise BenchError(f"{spec.name}: callgrind wrote no totals")
    return int(match.group(1)) / requests


def measure(
    bench: Bench, names: list[str] | None = None, requests: int = 200, warmup: int = 100
) -> dict[str, Any]:
    names = names or list(TARGETS)
    known = TARGETS | VARIANTS
    counts = {name: count(bench, known[name], requests, warmup) for name in names}
    bare = counts.get("bare")
    return {
        "requests": requests,
        "instructions_per_request": counts,
        "bare_over_this": {name: bare / n if bare else None for name, n in counts.items()},
    }


def describe(result: dict[str, Any]) -> str:
    return "instructions per request (callgrind): " + ", ".join(
        f"{name} {n / 1000:,.0f}k (bare/this {result['bare_over_this'][name] or 0:.0%})"
        for name, n in result["instructions_per_request"].items()
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument(
        "--only",
        help=f"comma-separated, of: {', '.join(TARGETS | VARIANTS)} (default: all but -nolog)",
    )
    parser.add_argument("--json", type=Path)
    parser.add_argument("--uvloop", action="store_true", help="the Tornado servers on uvloop")
    args = parser.parse_args()
    try:
        require_tools("valgrind", "callgrind_control", "redis-server", "taskset")
        bench = Bench(uvloop=args.uvloop)
        try:
            names = args.only.split(",") if args.only else None
            unknown = set(names or []) - set(TARGETS | VARIANTS)
            if unknown:
                parser.error(f"unknown target(s): {', '.join(sorted(unknown))}")
            result = measure(bench, names, args.requests)
        finally:
            bench.close()
    except BenchError as exc:
        print(f"instructions.py: {exc}", file=sys.stderr)
        return 1
    print(describe(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

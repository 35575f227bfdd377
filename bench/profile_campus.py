"""Where campus's time goes under the benchmark's load: a py-spy profile, summarised.

    python bench/profile_campus.py              # campus-memory and campus-redis, 8 s each

The server runs as in bench/run.py (pinned to CPU 0, `wrk -t1 -c32` on CPU 1, GET /api/me with
a live session) while py-spy (from bench/.venv) samples it without pausing it. Only the event
loop's thread counts, and not while it waits in epoll: shares are of the time it spends
working. For each target it
writes the collapsed stacks (`profile-<target>.folded`: flamegraph.pl and speedscope read them)
and a summary (`profile-<target>.txt`): the share of samples by area (the innermost component
on the stack: the access log, the Redis client, the session layer, ...), then functions by
inclusive and by self share. `python bench/run.py` runs this too.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from harness import BENCH, LOAD_CPU, VENV, BenchError, stop, venv_python, wrk
from targets import Bench, Spec

RATE = 250  # samples per second

#: (area, path fragments) — a frame belongs to the first area one of whose fragments it has;
#: a stack belongs to the area of its innermost frame that belongs to one.
AREAS = [
    ("access log (logging)", ("campus/observability/accesslog.py", "logging/")),
    ("Redis client (redis-py)", ("redis/", "hiredis")),
    ("JSON", ("json/",)),
    ("session layer (campus/session)", ("campus/session/",)),
    ("campus handlers", ("campus/",)),
    ("Tornado web (handlers, routing, headers)", ("tornado/web.py", "tornado/routing.py")),
    ("Tornado HTTP and socket I/O", ("tornado/",)),
    ("asyncio event loop", ("asyncio/", "selectors.py")),
]
OURS = ("campus/", "tornado/", "redis/", "logging/", "asyncio/", "json/", "bench/")


def frame_file(frame: str) -> str:
    """``func (path/file.py:12)`` -> ``path/file.py``."""
    inside = frame.rpartition(" (")[2].rstrip(")")
    return inside.rsplit(":", 1)[0]


def frame_name(frame: str) -> str:
    """``func (path/file.py:12)`` -> ``func (path/file.py)``: one entry per function."""
    return f"{frame.rpartition(' (')[0]} ({frame_file(frame)})"


def area_of(stack: list[str]) -> str:
    for frame in reversed(stack):
        path = frame_file(frame)
        for area, fragments in AREAS:
            if any(fragment in path for fragment in fragments):
                return area
    return "other"


def summarise(folded: Path, top: int = 25) -> dict[str, Any]:
    areas: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in folded.read_text().splitlines():
        stack_text, _, count_text = line.rpartition(" ")
        if not stack_text:
            continue
        count = int(count_text)
        stack = stack_text.split(";")
        if stack[0].startswith("_bootstrap (threading.py"):
            continue  # another thread: the Argon2 pool idling, not the event loop's work
        total += count
        areas[area_of(stack)] += count
        for name in {frame_name(f) for f in stack if any(p in frame_file(f) for p in OURS)}:
            inclusive[name] += count
        own[frame_name(stack[-1])] += count
    if not total:
        raise BenchError(f"py-spy recorded no samples in {folded}")
    share = {k: v / total for k, v in areas.most_common()}
    return {
        "samples": total,
        "areas": share,
        "inclusive": {k: v / total for k, v in inclusive.most_common(top)},
        "self": {k: v / total for k, v in own.most_common(top)},
    }


def write_summary(name: str, found: dict[str, Any], path: Path, command: str) -> None:
    lines = [
        f"# {name}: {found['samples']} py-spy samples at {RATE}/s of busy time "
        f"({found['requests_per_second']:.0f} req/s under the profiler)",
        f"# made by: {command}",
        "",
        "by area (innermost component on the stack):",
    ]
    lines += [f"  {share:6.1%}  {area}" for area, share in found["areas"].items()]
    lines += ["", "functions, inclusive (on the stack):"]
    lines += [f"  {share:6.1%}  {name}" for name, share in found["inclusive"].items()]
    lines += ["", "functions, self (at the top of the stack):"]
    lines += [f"  {share:6.1%}  {name}" for name, share in found["self"].items()]
    path.write_text("\n".join(lines) + "\n")


def profile(
    bench: Bench, spec: Spec, *, duration: float, connections: int, out_dir: Path, suffix: str = ""
) -> dict[str, Any]:
    """Profile one target under load; py-spy's collapsed stacks go to *out_dir*."""
    spy = VENV / "bin" / "py-spy"
    venv_python()
    process, port, _ = bench.start(spec, pinned=True)
    folded = out_dir / f"profile-{spec.name}{suffix}.folded"
    try:
        cookie = bench.session_cookie(spec, port)
        url = f"http://127.0.0.1:{port}/api/me"
        wrk(url, cookie, 2, connections)  # warm up
        recorder = subprocess.Popen(
            [
                *("taskset", "-c", LOAD_CPU, str(spy), "record", "--pid", str(process.pid)),
                *("--rate", str(RATE), "--duration", f"{duration + 1:g}", "--format", "raw"),
                *("--output", str(folded), "--nonblocking"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        time.sleep(0.5)  # py-spy attaches
        sample = wrk(url, cookie, duration, connections)
        said = recorder.communicate(timeout=duration + 30)[0]
        if recorder.returncode != 0:
            raise BenchError(f"py-spy failed: {said.strip().splitlines()[-1:]}")
    finally:
        stop(process)
    found = summarise(folded)
    found["requests_per_second"] = sample.rps
    return found


def profile_all(
    bench: Bench, *, duration: float, connections: int, out_dir: Path, suffix: str, command: str
) -> dict[str, Any]:
    results = {}
    for spec in (
        Spec("campus-memory", "campus", "memory"),
        Spec("campus-redis", "campus", "redis"),
    ):
        found = profile(
            bench, spec, duration=duration, connections=connections, out_dir=out_dir, suffix=suffix
        )
        write_summary(spec.name, found, out_dir / f"profile-{spec.name}{suffix}.txt", command)
        results[spec.name] = found
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=8)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    bench = Bench(uvloop=False)
    try:
        command = "python bench/profile_campus.py " + " ".join(sys.argv[1:])
        results = profile_all(
            bench,
            duration=args.duration,
            connections=args.connections,
            out_dir=BENCH,
            suffix="",
            command=command.strip(),
        )
    except BenchError as exc:
        print(f"profile_campus.py: {exc}", file=sys.stderr)
        return 1
    finally:
        bench.close()
    for name in results:
        print((BENCH / f"profile-{name}.txt").read_text())
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

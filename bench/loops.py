"""uvloop against asyncio's own loop, for bare Tornado and campus, in one interleaved run.

    python bench/loops.py              # 5 rounds of 5 s: bare, campus-memory, campus-redis
    python bench/loops.py --rounds 3

Every target runs on both loops, one after the other within each round (pinned as in
bench/run.py: the server on CPU 0, `wrk -t1 -c32` on CPU 1), so drift on a shared machine
hits both alike; the ratios are per round and of medians. campus picks its loop with
`CAMPUS_SERVER_EVENT_LOOP`; bare Tornado is put on uvloop by bench/with_uvloop.py.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from harness import BENCH, BenchError, Sample, require_tools
from targets import Bench, Settings, Spec

LOOPS = ("asyncio", "uvloop")
TARGETS = [("bare", "bare", None), ("campus-memory", "campus", "memory")]
TARGETS += [("campus-redis", "campus", "redis")]


class LoopBench(Bench):
    """Bench whose targets named ``<name>-<loop>`` run on that loop."""

    def command(self, spec: Spec, port: int) -> tuple[list[str], dict[str, str], Path]:
        command, env, cwd = super().command(spec, port)
        loop = spec.name.rsplit("-", 1)[1]
        if spec.kind == "campus":
            env["CAMPUS_SERVER_EVENT_LOOP"] = loop
        elif loop == "uvloop":
            command[1:1] = [str(BENCH / "with_uvloop.py")]
        return command, env, cwd


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=5)
    args = parser.parse_args()
    settings = Settings(args.rounds, args.duration, warmup=2, connections=32, uvloop=False)
    samples: dict[tuple[str, str], list[Sample]] = {}
    try:
        require_tools("wrk", "taskset", "redis-server")
        bench = LoopBench(uvloop=False)
        try:
            for round_ in range(settings.rounds):
                for name, kind, store in TARGETS:
                    for loop in LOOPS:
                        spec = Spec(f"{name}-{loop}", kind, store)
                        sample = bench.measure(spec, settings, pinned=True)
                        samples.setdefault((name, loop), []).append(sample)
                print(f"round {round_ + 1}/{settings.rounds} done", file=sys.stderr)
        finally:
            bench.close()
    except BenchError as exc:
        print(f"loops.py: {exc}", file=sys.stderr)
        return 1
    for name, _, _ in TARGETS:
        rows = {loop: samples[(name, loop)] for loop in LOOPS}
        for loop, taken in rows.items():
            rps = statistics.median(s.rps for s in taken)
            cpu = statistics.median(s.cpu_us_per_request or 0 for s in taken)
            print(f"{name:14} {loop:8} {rps:7.0f} req/s  {cpu:5.0f} CPU us/req")
        per_round = [u.rps / a.rps for a, u in zip(rows["asyncio"], rows["uvloop"], strict=True)]
        print(f"{name:14} uvloop/asyncio per round: {', '.join(f'{r:.2f}' for r in per_round)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

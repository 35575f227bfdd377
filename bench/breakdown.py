"""Where a campus-redis request goes, layer by layer, in production as shipped.

    python bench/breakdown.py                      # instructions and CPU µs, 2 rounds
    python bench/breakdown.py --no-cpu             # instructions only (callgrind)
    python bench/breakdown.py --base ../perf-base  # the same table for another checkout too

campus runs as production ships it (``CAMPUS_ENV=production``: its config file and defaults,
the Redis store, the access log on, a user made with ``campus users add``); then again with
one layer taken out at a time (bench/layers.py says how each is removed). A layer's cost is
what its removal saves against the whole. Bare Tornado (bench/bare.py, on asyncio's loop and
on uvloop, campus's loop) is the ceiling. Two figures per row:

- **instructions** per ``GET /api/me`` (callgrind, as bench/instructions.py counts them): no
  neighbour moves them, so they rank the layers;
- **CPU µs** per request under load (``wrk -t1 -c32`` on CPU 1, the server alone on CPU 0),
  the median of interleaved rounds: what the layers cost in time, system calls included.

The CPU model goes with the table: the same code costs different µs on different CPUs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import instructions
from harness import BenchError, load_average, require_tools
from layers import LAYERS
from run import cpu_model
from targets import Bench, Settings, Spec

WHOLE = Spec("campus-redis-prod", "campus", "redis", env="production")


def specs(base: Path | None) -> list[Spec]:
    rows = [Spec("bare", "bare"), Spec("bare-uvloop", "bare"), WHOLE]
    rows += [replace(WHOLE, name=f"without {layer}", without=layer) for layer in LAYERS]
    if base is not None:
        rows.append(replace(WHOLE, name="campus-redis-prod (base)", checkout=str(base)))
    return rows


def cpu_us(bench: Bench, spec: Spec, settings: Settings) -> float:
    sample = bench.measure(spec, settings, pinned=True)
    assert sample.cpu_us_per_request is not None
    return sample.cpu_us_per_request


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2, help="CPU rounds, interleaved")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--requests", type=int, default=200, help="per callgrind count")
    parser.add_argument("--no-cpu", action="store_true")
    parser.add_argument("--no-instructions", action="store_true")
    parser.add_argument("--base", type=Path, help="another checkout of campus, measured whole")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    tools = ["redis-server", "taskset"]
    tools += [] if args.no_cpu else ["wrk"]
    tools += [] if args.no_instructions else ["valgrind", "callgrind_control"]
    rows = specs(args.base.resolve() if args.base else None)
    result: dict[str, Any] = {"cpu": cpu_model(), "load_before": load_average(), "rows": {}}
    try:
        require_tools(*tools)
        bench = Bench(uvloop=False)
        try:
            counts: dict[str, float] = {}
            if not args.no_instructions:
                for spec in rows:
                    counts[spec.name] = instructions.count(bench, spec, args.requests, 100)
                    print(f"{spec.name}: {counts[spec.name] / 1000:,.0f}k", file=sys.stderr)
            cpu: dict[str, list[float]] = {spec.name: [] for spec in rows}
            if not args.no_cpu:
                settings = Settings(args.rounds, args.duration, 2.0, 32, uvloop=False)
                for round_ in range(args.rounds):
                    for spec in rows:
                        cpu[spec.name].append(cpu_us(bench, spec, settings))
                        print(f"round {round_ + 1} {spec.name}: {cpu[spec.name][-1]:.0f} µs")
        finally:
            bench.close()
    except BenchError as exc:
        print(f"breakdown.py: {exc}", file=sys.stderr)
        return 1
    for spec in rows:
        result["rows"][spec.name] = {
            "instructions": counts.get(spec.name),
            "cpu_us": statistics.median(cpu[spec.name]) if cpu[spec.name] else None,
            "cpu_us_rounds": cpu[spec.name],
        }
    result["load_after"] = load_average()
    print(table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


def table(result: dict[str, Any]) -> str:
    rows = result["rows"]
    whole = rows[WHOLE.name]
    lines = [
        f"CPU: {result['cpu']}; load average before {result['load_before'][0]:.2f},"
        f" after {result['load_after'][0]:.2f}",
        "",
        "| target | instructions/req | layer's share | CPU µs/req | layer's share |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, row in rows.items():
        instr, cpu = row["instructions"], row["cpu_us"]
        saved_i = saved_c = ""
        if name.startswith("without "):
            if instr is not None and whole["instructions"] is not None:
                saved_i = f"{(whole['instructions'] - instr) / 1000:,.0f}k"
            if cpu is not None and whole["cpu_us"] is not None:
                saved_c = f"{whole['cpu_us'] - cpu:.0f}"
        lines.append(
            f"| {name} | {'-' if instr is None else f'{instr / 1000:,.0f}k'} | {saved_i} |"
            f" {'-' if cpu is None else f'{cpu:.0f}'} | {saved_c} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())

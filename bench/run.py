"""campus against what users would pick instead, per core and on the whole machine, in one run.

    python bench/run.py            # the full run (~8 minutes): results.json, results.png
    python bench/run.py --quick    # a smoke run (~1 minute): results-quick.json/.png

Per core: every target runs alone on a free port, pinned to CPU 0, while `wrk -t1 -c32` runs
pinned to CPU 1 against `GET /api/me` with a live session (bare Tornado gets a cookie too and
ignores it). Every target gets the same warm-up and load; rounds are interleaved (bare,
campus-memory, ..., bare, ...) so drift on a shared machine hits all alike; the table shows
medians and the ratios are taken between medians of this run.

Targets: bare Tornado without logging (the ceiling); campus with the memory store and with
Redis, as shipped (default settings, access log on); the Express app campus replaces
(tests/express: express-session on its MemoryStore, and on connect-redis); aiohttp-session on
Redis (redis-py). Each Redis target uses this run's own redis-server, never one on 6379.

Then the whole machine (nothing pinned): campus and the Express app at 1 and 2 processes on
Redis (`[server] processes = N` for campus, node's cluster module for Express); the
logins-don't-stall-readers and memory-per-session benchmarks (bench/stall.py, bench/memory.py);
a py-spy profile of campus under the same load.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import instructions
import memory
import profile_campus
import readme
import redis
import stall
from harness import (
    BENCH,
    LOAD_CPU,
    ROOT,
    SERVER_CPU,
    BenchError,
    load_average,
    require_tools,
    venv_python,
)
from targets import EXPRESS_DIR, PER_CORE, Bench, Settings, Spec, Target

# --- the run -----------------------------------------------------------------------------


def interleaved(
    bench: Bench, specs: list[Spec], settings: Settings, *, pinned: bool, label: str
) -> list[Target]:
    targets = [Target(spec) for spec in specs]
    for round_ in range(settings.rounds):
        for target in targets:
            target.samples.append(bench.measure(target.spec, settings, pinned=pinned))
        print(f"{label}: round {round_ + 1}/{settings.rounds} done", file=sys.stderr)
    return targets


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def goals(per_core: dict[str, dict[str, Any]], costs: dict[str, float]) -> list[dict[str, Any]]:
    """Issue 12's targets for campus, as shipped: met or not, and by how much.

    A req/s ratio also comes per round (how far noise moves it) and by CPU time per request
    (the other target's over campus's: what the ratio would be if CPU were the only limit).
    """

    def column(name: str, key: str) -> list[float]:
        return [s[key] for s in per_core.get(name, {}).get("samples", [])]

    results: list[dict[str, Any]] = []

    def at_least(ours: str, theirs: str, target: float) -> None:
        value = ratio(per_core.get(ours, {}).get("rps"), per_core.get(theirs, {}).get("rps"))
        met = value is not None and value >= target
        gap = "" if met or value is None else f"needs {target / value - 1:+.0%} req/s"
        rounds = [a / b for a, b in zip(column(ours, "rps"), column(theirs, "rps"), strict=False)]
        by_cpu = ratio(
            per_core.get(theirs, {}).get("cpu_us_per_request"),
            per_core.get(ours, {}).get("cpu_us_per_request"),
        )
        results.append(
            {
                "goal": f"{ours} >= {target:.2f}x {theirs}",
                "value": value,
                "target": target,
                "met": met,
                "gap": gap,
                "unit": "x",
                "per_round": rounds,
                "by_cpu": by_cpu,
            }
        )

    for suffix in ("-prod", ""):  # production as shipped first, then development
        redis_, memory_ = "campus-redis" + suffix, "campus-memory" + suffix
        at_least(redis_, "express-redis", 1.10)
        at_least(redis_, "bare", 0.80)
        at_least(memory_, "bare", 0.90)
        ours = per_core.get(redis_, {}).get("p99_ms")
        theirs = per_core.get("express-redis", {}).get("p99_ms")
        met = ours is not None and theirs is not None and ours <= theirs
        gap = "" if met or ours is None or theirs is None else f"{ours - theirs:.1f} ms over"
        results.append(
            {
                "goal": f"{redis_} p99 <= express-redis p99",
                "value": ours,
                "target": theirs,
                "met": met,
                "gap": gap,
                "unit": "ms",
                "per_round": [
                    a - b
                    for a, b in zip(
                        column(redis_, "p99_ms"), column("express-redis", "p99_ms"), strict=False
                    )
                ],
            }
        )
        counted = per_core.get(redis_, {}).get("store_commands_per_request")
        sent = costs.get("GET /api/me")
        met = sent == 1 and counted == 1
        results.append(
            {
                "goal": f"1 Redis command per read-only request ({redis_})",
                "value": counted,
                "target": 1,
                "met": met,
                "gap": "" if met else f"{counted} per request, {sent} sent per /api/me",
                "unit": "",
            }
        )
    return results


def versions(bench: Bench, python: Path | None) -> dict[str, str]:
    def out(command: list[str], cwd: Path = ROOT) -> str:
        try:
            result = subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=30)
        except OSError:
            return "?"
        return (result.stdout or result.stderr).strip().splitlines()[0] if result else "?"

    import tornado

    found = {
        "python": platform.python_version(),
        "tornado": tornado.version,
        "redis-py": redis.__version__,
        "redis-server": str(bench.client.info("server")["redis_version"]),
        "node": out(["node", "--version"]),
        "wrk": out(["wrk", "--version"]).split(" [")[0].removeprefix("wrk "),
    }
    lock = json.loads((EXPRESS_DIR / "package-lock.json").read_text())["packages"]
    for name in ("express", "express-session", "connect-redis", "redis"):
        found[f"npm {name}"] = lock.get(f"node_modules/{name}", {}).get("version", "?")
    if python is not None:
        script = (
            "import aiohttp, aiohttp_session, matplotlib; "
            "print(aiohttp.__version__, aiohttp_session.__version__, matplotlib.__version__)"
        )
        parts = out([str(python), "-c", script]).split()
        if len(parts) == 3:
            found |= {"aiohttp": parts[0], "aiohttp-session": parts[1], "matplotlib": parts[2]}
    return found


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


def table(per_core: dict[str, dict[str, Any]]) -> str:
    bare_rps = per_core["bare"]["rps"]
    lines = [
        f"{'target':<16}{'req/s':>8}{'of bare':>9}{'p50 ms':>8}{'p99 ms':>8}"
        f"{'CPU us/req':>11}{'RSS MiB':>9}{'store cmd/req':>14}{'log/req':>8}"
    ]
    for name, row in per_core.items():
        commands = row["store_commands_per_request"]
        lines.append(
            f"{name:<16}{row['rps']:>8.0f}{row['rps'] / bare_rps:>9.0%}{row['p50_ms']:>8.2f}"
            f"{row['p99_ms']:>8.2f}{row['cpu_us_per_request']:>11.0f}{row['rss_mib']:>9.1f}"
            f"{'-' if commands is None else f'{commands:.3f}':>14}"
            f"{row['log_lines_per_request']:>8.2f}"
        )
    return "\n".join(lines)


def scale_table(scale: dict[str, Any]) -> str:
    lines = [f"{'target':<16}{'processes':>10}{'req/s':>8}{'p99 ms':>8}{'x1 process':>11}"]
    rows = scale["targets"]
    for name, row in rows.items():
        one = rows.get(name.rsplit("-x", 1)[0] + "-x1", {}).get("rps")
        lines.append(
            f"{name:<16}{row['processes']:>10}{row['rps']:>8.0f}{row['p99_ms']:>8.2f}"
            f"{ratio(row['rps'], one) or 0:>11.2f}"
        )
    if not scale["campus_processes"]["supported"]:
        lines.append(f"campus at one process per CPU: {scale['campus_processes']['note']}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1 short round each")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 3; quick 1)")
    parser.add_argument("--duration", type=float, help="seconds per measurement (5; quick 2)")
    parser.add_argument("--warmup", type=float, help="seconds of warm-up per start (2; quick 1)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--only", help="comma-separated per-core targets (default: all)")
    parser.add_argument("--no-scale", action="store_true", help="skip the 1-vs-2-process part")
    parser.add_argument("--no-extras", action="store_true", help="skip stall, memory, profile")
    parser.add_argument("--uvloop", action="store_true", help="run the Tornado servers on uvloop")
    parser.add_argument("--json", type=Path, help="results file (default bench/results.json)")
    parser.add_argument(
        "--base",
        type=Path,
        help="another checkout of campus (e.g. main's): its production targets run too",
    )
    args = parser.parse_args()
    quick = args.quick
    settings = Settings(
        rounds=args.rounds or (1 if quick else 3),
        duration=args.duration or (2 if quick else 5),
        warmup=args.warmup or (1 if quick else 2),
        connections=args.connections,
        uvloop=args.uvloop,
    )
    default = "results-quick.json" if quick else "results.json"
    if args.uvloop:
        default = default.replace("results", "results-uvloop")
    output = args.json or BENCH / default
    specs = PER_CORE
    if args.only:
        names = args.only.split(",")
        unknown = sorted(set(names) - {s.name for s in PER_CORE})
        if unknown:
            parser.error(f"unknown target(s): {', '.join(unknown)}")
        specs = [s for s in PER_CORE if s.name in names or s.name == "bare"]
    if args.base:  # before and after in one run: the other checkout, in production
        checkout = str(args.base.resolve())
        specs = specs + [
            Spec(f"{name}-base", "campus", store, env="production", checkout=checkout)
            for name, store in (("campus-memory-prod", "memory"), ("campus-redis-prod", "redis"))
        ]
    try:
        require_tools("wrk", "taskset", "redis-server", "node")
        if args.uvloop and importlib.util.find_spec("uvloop") is None:
            raise BenchError(
                f"--uvloop: uvloop is not installed ({sys.executable} -m pip install uvloop)"
            )
        if not (EXPRESS_DIR / "node_modules").is_dir():
            raise BenchError(f"{EXPRESS_DIR}/node_modules is missing: run `npm ci` there")
        python = venv_python()  # before any timing: the first run installs it
        return run(args, settings, specs, output, python, quick)
    except BenchError as exc:
        print(f"run.py: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("run.py: interrupted", file=sys.stderr)
        return 130


def run(
    args: argparse.Namespace,
    settings: Settings,
    specs: list[Spec],
    output: Path,
    python: Path,
    quick: bool,
) -> int:
    started = time.monotonic()
    load_before = load_average()
    report: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python bench/run.py", *sys.argv[1:]]),
        "load_average": {"before": load_before},
        "machine": {
            "cpus": os.cpu_count(),
            "cpu": cpu_model(),
            "platform": platform.platform(),
        },
        "settings": asdict(settings)
        | {"server_cpu": SERVER_CPU, "load_cpu": LOAD_CPU, "wrk_threads": 1},
    }
    bench = Bench(settings.uvloop)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # clean up as on Ctrl-C
    try:
        report["versions"] = versions(bench, python)
        targets = interleaved(bench, specs, settings, pinned=True, label="per core")
        per_core = {t.spec.name: t.summary() for t in targets}
        bare_rps = per_core["bare"]["rps"]
        for row in per_core.values():
            row["ratio_to_bare"] = ratio(row["rps"], bare_rps)
        report["per_core"] = per_core
        costs = bench.campus_route_costs()
        report["campus_redis_commands_per_route"] = costs
        report["goals"] = goals(per_core, costs)
        if not args.no_scale:
            report["scale"] = scale(bench, settings)
        if not args.no_extras:
            report["profile"] = profile_campus.profile_all(
                bench,
                duration=2 if quick else 10,
                connections=settings.connections,
                out_dir=output.parent,
                suffix="-quick" if quick else "",
                command=report["command"],
            )
            print("profile: done", file=sys.stderr)
            if shutil.which("valgrind") and shutil.which("callgrind_control"):
                # A smoke run checks the counting works, on one target: valgrind is slow.
                names = ["campus-memory"] if quick else None
                counted = (10, 10) if quick else (100, 50)
                report["instructions"] = instructions.measure(bench, names, *counted)
                print("instructions: done", file=sys.stderr)
            else:
                print("instructions: skipped (valgrind is not installed)", file=sys.stderr)
    finally:
        bench.close()
    if not args.no_extras:
        report["stall"] = stall.measure(duration=3 if quick else 6)
        print("stall: done", file=sys.stderr)
        report["memory"] = memory_in_own_process(10_000 if quick else 100_000)
        print("memory: done", file=sys.stderr)
    report["load_average"]["after"] = load_average()
    report["seconds"] = round(time.monotonic() - started)
    output.write_text(json.dumps(report, indent=2) + "\n")
    chart = output.with_suffix(".png")
    result = subprocess.run(
        [str(python), str(BENCH / "chart.py"), str(output), str(chart)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise BenchError(f"chart.py failed: {result.stderr.strip().splitlines()[-1:]}")
    complete = not (args.only or args.no_scale or args.no_extras or args.uvloop)
    if complete and output == BENCH / "results.json":  # a full run's figures are the README's
        readme.update(BENCH / "README.md", report)
        print(f"updated {BENCH / 'README.md'}", file=sys.stderr)
    print_report(report)
    print(f"wrote {output} and {chart} in {report['seconds']} s", file=sys.stderr)
    return 0


def memory_in_own_process(sessions: int) -> dict[str, Any]:
    """bench/memory.py in a fresh interpreter: its RSS figure must not count this one's heap."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        result = subprocess.run(
            [
                sys.executable,
                str(BENCH / "memory.py"),
                "--sessions",
                str(sessions),
                "--json",
                out.name,
            ],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise BenchError(f"memory.py failed: {result.stderr.strip().splitlines()[-1:]}")
        found: dict[str, Any] = json.loads(Path(out.name).read_text())
    return found


def scale(bench: Bench, settings: Settings) -> dict[str, Any]:
    """The whole machine as shipped: campus in production and the Express app, each at one
    process and at one per CPU (campus's `[server] processes`, node's cluster module)."""
    cpus = os.cpu_count() or 1
    supported, note = bench.campus_processes(cpus)
    specs = [Spec("campus-redis-prod-x1", "campus", "redis", 1, env="production")]
    if supported and cpus > 1:
        specs.append(Spec(f"campus-redis-prod-x{cpus}", "campus", "redis", cpus, env="production"))
    specs.append(Spec("express-redis-x1", "express", "redis", 1))
    if cpus > 1:
        specs.append(Spec(f"express-redis-x{cpus}", "express", "redis", cpus))
    targets = interleaved(bench, specs, settings, pinned=False, label="scale")
    return {
        "campus_processes": {"supported": supported, "note": note, "count": cpus},
        "pinning": "none: servers, wrk and redis-server share every CPU",
        "targets": {t.spec.name: t.summary() for t in targets},
    }


def print_report(report: dict[str, Any]) -> None:
    print(f"load average before/after: {report['load_average']}")
    print(table(report["per_core"]))
    costs = report["campus_redis_commands_per_route"]
    print("campus Redis commands per route: " + ", ".join(f"{k} {v:.2f}" for k, v in costs.items()))
    for goal in report["goals"]:
        value, target = goal["value"], goal["target"]
        if value is None or target is None:  # a target of the goal was not run (--only)
            print(f"  {goal['goal']}: not measured in this run")
            continue
        verdict = "met" if goal["met"] else f"MISSED ({goal['gap']})"
        rounds = ", ".join(f"{r:.2f}" for r in goal.get("per_round", []))
        print(
            f"  {goal['goal']}: {value:.2f} (target {target:.2f}) {verdict}"
            + (f"; per round {rounds}" if rounds else "")
            + (f"; by CPU µs {goal['by_cpu']:.2f}" if goal.get("by_cpu") else "")
        )
    if "scale" in report:
        print(scale_table(report["scale"]))
    if "stall" in report:
        print(stall.describe(report["stall"]))
    if "memory" in report:
        print(memory.describe(report["memory"]))
    if "instructions" in report:
        print(instructions.describe(report["instructions"]))
    if "profile" in report:
        for name, found in report["profile"].items():
            print(
                f"profile {name}: " + ", ".join(f"{k} {v:.0%}" for k, v in found["areas"].items())
            )


if __name__ == "__main__":
    raise SystemExit(main())

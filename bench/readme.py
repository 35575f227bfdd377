"""The "Latest results" block of bench/README.md, written from a results file.

    python bench/readme.py [bench/results.json]     # rewrite the block from that file

A full `python bench/run.py` (default results file) does this itself, so every figure in the
README comes from one run, next to the command that made it. Only the text between the two
marker comments is replaced; the prose around it is the README's own.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

START = "<!-- results:start (written by bench/run.py from results.json: do not edit) -->"
END = "<!-- results:end -->"


def _num(value: float | None, fmt: str = "{:.0f}") -> str:
    return "-" if value is None else fmt.format(value)


def _which(row: dict[str, Any]) -> str:
    """The commands behind a per-request count: `` (GET, EXPIRE)``."""
    names = [name.upper() for name, n in row.get("store_commands", {}).items() if n >= 0.05]
    return f" ({', '.join(names)})" if names else ""


def per_core_table(report: dict[str, Any]) -> list[str]:
    lines = [
        "| target | what | req/s | of bare | p50 ms | p99 ms | CPU µs/req | RSS MiB "
        "| store cmd/req | log lines/req |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in report["per_core"].items():
        lines.append(
            f"| {name} | {row['description']} | {_num(row['rps'])} "
            f"| {_num(row['ratio_to_bare'], '{:.0%}')} | {_num(row['p50_ms'], '{:.1f}')} "
            f"| {_num(row['p99_ms'], '{:.1f}')} | {_num(row['cpu_us_per_request'])} "
            f"| {_num(row['rss_mib'], '{:.1f}')} "
            f"| {_num(row['store_commands_per_request'], '{:.2f}')}{_which(row)} "
            f"| {_num(row['log_lines_per_request'], '{:.2f}')} |"
        )
    return lines


def goals_table(report: dict[str, Any]) -> list[str]:
    """campus against its peers, as ratios: this run's median, each round, and by CPU time
    and by instructions (the figure no neighbour moves)."""
    lines = [
        "| campus (as shipped) against | this run | per round | by CPU µs/req | by instructions |",
        "|---|---:|---|---:|---:|",
    ]
    counts = report.get("instructions", {}).get("instructions_per_request", {})
    for goal in report["goals"]:
        ours, _, theirs = goal["goal"].partition(" >= ")
        theirs = theirs.partition("x ")[2]
        by_instructions = None
        if ours in counts and theirs in counts:
            by_instructions = counts[theirs] / counts[ours]
        unit = goal.get("unit", "")
        fmt = {"x": "{:.2f}x", "ms": "{:.1f} ms"}.get(unit, "{:.2f}")
        rounds = goal.get("per_round") or []
        each = "{:.2f}" if unit == "x" else "{:+.0f} ms"
        value = _num(goal["value"], fmt)
        if unit == "ms":  # two latencies side by side, not a ratio
            value += f" vs {_num(goal['target'], fmt)}"
        lines.append(
            f"| {_comparison(goal['goal'])} | {value} "
            f"| {', '.join(each.format(r) for r in rounds) or '-'} "
            f"| {_num(goal.get('by_cpu'), '{:.2f}x')} | {_num(by_instructions, '{:.2f}x')} |"
        )
    return lines


def _comparison(goal: str) -> str:
    """What a row compares, without the threshold run.py checks it against."""
    if " >= " in goal:
        ours, _, rest = goal.partition(" >= ")
        return f"{ours} req/s ÷ {rest.partition('x ')[2]}'s"
    if " <= " in goal:
        ours, _, theirs = goal.partition(" <= ")
        return f"{ours} against {theirs}"
    return goal


def scale_lines(scale: dict[str, Any]) -> list[str]:
    rows = scale["targets"]
    lines = [
        "| target | processes | req/s | p99 ms | CPU µs/req | vs 1 process |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, row in rows.items():
        one = rows.get(name.rsplit("-x", 1)[0] + "-x1", {}).get("rps")
        versus = f"{row['rps'] / one:.2f}x" if one else "-"
        lines.append(
            f"| {name} | {row['processes']} | {_num(row['rps'])} | {_num(row['p99_ms'], '{:.1f}')} "
            f"| {_num(row['cpu_us_per_request'])} | {versus} |"
        )
    note = scale["campus_processes"]["note"]
    lines += ["", f"campus at one process per CPU: {note}."]
    return lines


def instruction_lines(found: dict[str, Any]) -> list[str]:
    lines = [
        f"Instructions per `GET /api/me` (callgrind, {found['requests']} requests each; "
        "no neighbour moves this figure):",
        "",
        "| target | instructions/req | bare ÷ this |",
        "|---|---:|---:|",
    ]
    for name, count in found["instructions_per_request"].items():
        versus = _num(found["bare_over_this"][name], "{:.0%}")
        lines.append(f"| {name} | {count / 1000:,.0f}k | {versus} |")
    return lines


def profile_lines(profile: dict[str, Any]) -> list[str]:
    names = list(profile)
    areas: list[str] = []
    for name in names:
        areas += [a for a in profile[name]["areas"] if a not in areas]
    lines = [
        "Where campus's busy time goes (py-spy, innermost component on the stack):",
        "",
        "| area | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    for area in areas:
        shares = [profile[n]["areas"].get(area, 0.0) for n in names]
        lines.append(f"| {area} | " + " | ".join(f"{s:.0%}" for s in shares) + " |")
    lines += ["", "Functions by inclusive share (past the event loop's own frames):", ""]
    for name in names:
        top = [
            (function, share)
            for function, share in profile[name]["inclusive"].items()
            if share < 0.8  # the frames every sample has (main, run_forever, ...)
        ][:12]
        shown = "; ".join(f"{f.split(' (')[0]} {s:.0%}" for f, s in top)
        lines.append(f"- {name}: {shown}.")
    lines += [
        "",
        "Full summaries: [profile-campus-memory.txt](profile-campus-memory.txt), "
        "[profile-campus-redis.txt](profile-campus-redis.txt).",
    ]
    return lines


def block(report: dict[str, Any]) -> str:
    load = report["load_average"]
    settings = report["settings"]
    versions = ", ".join(f"{k} {v}" for k, v in report.get("versions", {}).items())
    lines = [
        START,
        "",
        f"Made by `{report['command'].strip()}` on {report['date']} in {report['seconds']} s. "
        f"Machine: {report['machine']['cpus']} vCPUs ({report['machine']['cpu']}), "
        f"{report['machine']['platform']}; {versions}.",
        "",
        f"Load average (1, 5, 15 min) before the run: {', '.join(map(str, load['before']))}; "
        f"after: {', '.join(map(str, load.get('after', [])))} — the machine is shared, so read "
        "ratios and CPU per request rather than absolute requests/s.",
        "",
        "![the table below as a chart](results.png)",
        "",
        f"Per core: medians of {settings['rounds']} interleaved rounds of "
        f"{settings['duration']:g} s, after {settings['warmup']:g} s of warm-up per start; "
        f"`wrk -t1 -c{settings['connections']}` on CPU {settings['load_cpu']}, the server on "
        f"CPU {settings['server_cpu']}.",
        "",
        *per_core_table(report),
        "",
        *goals_table(report),
        "",
        "Redis commands campus sends (MONITOR, 20 requests each): "
        + ", ".join(f"`{k}` {v:.2f}" for k, v in report["campus_redis_commands_per_route"].items())
        + ".",
    ]
    if "scale" in report:
        lines += [
            "",
            "Whole machine (nothing pinned; servers, wrk and redis-server share both vCPUs), "
            "on Redis:",
            "",
            *scale_lines(report["scale"]),
        ]
    if "instructions" in report:
        lines += ["", *instruction_lines(report["instructions"])]
    if "profile" in report:
        lines += ["", *profile_lines(report["profile"])]
    if "stall" in report:
        stall = report["stall"]
        alone, busy = stall["alone"], stall["with_logins"]
        lines += [
            "",
            f"**Logins don't stall readers**: `/api/me` p99 {alone['p99_ms']:.1f} ms alone "
            f"({alone['rps']:.0f} req/s, {stall['readers']} connections) and "
            f"{busy['p99_ms']:.1f} ms while {stall['logins']} clients log in continuously "
            f"({stall['logins_per_second']:.1f} logins/s, readers keeping {busy['rps']:.0f} "
            f"req/s): ratio {stall['p99_ratio']:.2f}.",
        ]
    if "memory" in report:
        memory = report["memory"]
        lines += [
            "",
            f"**Memory per session** (memory store, {memory['sessions']:,} sessions holding "
            f"a user's key and sign-in facts): {memory['bytes_per_session_tracemalloc']:.0f} "
            f"bytes by tracemalloc, {memory['bytes_per_session_rss']:.0f} bytes of RSS growth."
            " With "
            f"`max_sessions = {memory['bound']:,}`, creating {2 * memory['bound']:,} keeps "
            f"{memory['kept_after_double']:,} and memory stays flat "
            f"({memory['bytes_at_bound'] / 1e6:.1f} MB at the bound, "
            f"{memory['bytes_after_double'] / 1e6:.1f} MB after twice as many).",
        ]
    lines += ["", END]
    return "\n".join(lines)


def update(readme: Path, report: dict[str, Any]) -> None:
    text = readme.read_text()
    if START not in text or END not in text:
        raise ValueError(f"{readme} has no results markers")
    before, rest = text.split(START, 1)
    after = rest.split(END, 1)[1]
    readme.write_text(before + block(report) + after)


def main() -> int:
    import json

    bench = Path(__file__).resolve().parent
    results = Path(sys.argv[1]) if len(sys.argv) > 1 else bench / "results.json"
    try:
        update(bench / "README.md", json.loads(results.read_text()))
    except (OSError, ValueError, KeyError) as exc:
        print(f"readme.py: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The table of a bench/run.py results file as a PNG (runs in bench/.venv, with matplotlib).

    bench/.venv/bin/python bench/chart.py bench/results.json bench/results.png

bench/run.py calls it after every run. Bars are medians; the thin lines span the rounds'
lowest and highest values.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt

COLOURS = {
    "bare": "#9e9e9e",
    "campus": "#1f77b4",
    "express": "#d62728",
    "aiohttp": "#2ca02c",
}


def colour(name: str) -> str:
    return COLOURS.get(name.split("-")[0], "#7f7f7f")


def spread(row: dict[str, Any], key: str, scale: float = 1.0) -> tuple[float, float]:
    values = [s[key] * scale for s in row["samples"] if s.get(key) is not None]
    median = row["rss_mib"] if key == "rss_kib" else (row.get(key) or 0) * scale
    if not values:
        return 0.0, 0.0
    return median - min(values), max(values) - median


def panel(
    axis: Any,
    rows: dict[str, dict[str, Any]],
    key: str,
    title: str,
    fmt: str,
    *,
    scale: float = 1.0,
    labels: list[str] | None = None,
) -> None:
    names = list(rows)
    values = [(rows[n].get(key) or 0) * scale for n in names]
    if key == "rss_kib":
        values = [rows[n]["rss_mib"] for n in names]
    errors = [spread(rows[n], key, scale) for n in names]
    bars = axis.barh(
        names,
        values,
        color=[colour(n) for n in names],
        xerr=list(zip(*errors, strict=True)) if errors else None,
        error_kw={"elinewidth": 0.8, "capsize": 2},
    )
    shown = labels or [fmt.format(v) for v in values]
    axis.bar_label(bars, labels=shown, padding=3, fontsize=8)
    axis.set_title(title, fontsize=10)
    axis.invert_yaxis()
    axis.margins(x=0.25)
    axis.tick_params(labelsize=8)


def main(results: Path, out: Path) -> int:
    report = json.loads(results.read_text())
    rows: dict[str, dict[str, Any]] = report["per_core"]
    scale = report.get("scale")
    figure, axes = plt.subplots(2, 4, figsize=(20, 7.5))
    ratios = [f"{r['rps']:.0f} ({r.get('ratio_to_bare') or 0:.0%} of bare)" for r in rows.values()]
    panel(axes[0][0], rows, "rps", "requests/s, one core", "{:.0f}", labels=ratios)
    panel(axes[0][1], rows, "p99_ms", "p99 latency, ms (lower is better)", "{:.1f}")
    panel(axes[0][2], rows, "cpu_us_per_request", "server CPU per request, µs", "{:.0f}")
    panel(axes[1][0], rows, "rss_kib", "server RSS, MiB", "{:.1f}", scale=1 / 1024)
    commands = {n: r for n, r in rows.items() if r.get("store_commands_per_request") is not None}
    if commands:
        panel(
            axes[1][1],
            commands,
            "store_commands_per_request",
            "Redis commands per GET /api/me",
            "{:.2f}",
        )
    else:
        axes[1][1].axis("off")
    if scale:
        rows = dict(scale["targets"])
        if not scale["campus_processes"]["supported"]:  # an empty row that says why
            rows = {"campus-redis-x2": {"rps": 0, "samples": []}, **rows}
            rows = dict(sorted(rows.items(), key=lambda item: item[0]))
        labels = [
            f"{row['rps']:.0f}" if row["samples"] else "not supported yet" for row in rows.values()
        ]
        panel(
            axes[1][2],
            rows,
            "rps",
            "requests/s, whole machine (1 and 2 processes)",
            "",
            labels=labels,
        )
    else:
        axes[1][2].axis("off")
    counts = report.get("instructions", {}).get("instructions_per_request", {})
    if counts:
        rows = {name: {"instructions": n / 1000, "samples": []} for name, n in counts.items()}
        panel(
            axes[0][3], rows, "instructions", "instructions per request, k (callgrind)", "{:,.0f}k"
        )
    else:
        axes[0][3].axis("off")
    stall = report.get("stall")
    if stall:
        rows = {
            "alone": {"p99": stall["alone"]["p99_ms"], "samples": []},
            f"{stall['logins']} clients logging in": {
                "p99": stall["with_logins"]["p99_ms"],
                "samples": [],
            },
        }
        title = f"campus /api/me p99 ms, logins vs readers (ratio {stall['p99_ratio']:.2f})"
        panel(axes[1][3], rows, "p99", title, "{:.1f}")
        for bar in axes[1][3].patches:
            bar.set_color("#1f77b4")
    else:
        axes[1][3].axis("off")
    load = report["load_average"]
    figure.suptitle(
        f"GET /api/me with a live session: medians of {report['settings']['rounds']} "
        f"interleaved rounds of {report['settings']['duration']:g} s, wrk -t1 "
        f"-c{report['settings']['connections']}, server on CPU {report['settings']['server_cpu']}"
        f"\n{report['date']}, {report['machine']['cpus']} CPUs ({report['machine']['cpu']}), "
        f"load average before/after {load['before'][0]:.2f}/{load.get('after', [0])[0]:.2f}",
        fontsize=10,
    )
    figure.tight_layout()
    figure.savefig(out, dpi=90)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print("usage: chart.py RESULTS.json OUT.png", file=sys.stderr)
        raise SystemExit(2)
    raise SystemExit(main(Path(sys.argv[1]), Path(sys.argv[2])))

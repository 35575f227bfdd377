"""Bytes per session in the memory store, and proof that max_sessions bounds it.

    python bench/memory.py                  # 100,000 sessions, then 2x the bound

Each session is what /login stores: the user's key and the facts of the sign-in (when, from
where, which browser). Memory is measured two ways:
tracemalloc (Python allocations, exact) and the process RSS (what the operator pays).
`python bench/run.py` runs this too (in a process of its own) and keeps its figures.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's campus

from campus.session.store import SessionRecord, encode_values, new_session_id
from campus.session.stores.memory import MemoryStore

AGENT = "Firefox 133 on Windows"


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def fill(store: MemoryStore, count: int) -> None:
    for i in range(count):
        user = f"student{i}@campus.test"
        sign_in = {"at": 1_800_000_000 + i, "address": f"198.51.100.{i % 256}", "agent": AGENT}
        record = SessionRecord(
            encode_values({"user": user, "signin": sign_in}), 2_000_000_000, user
        )
        await store.create(new_session_id(), record, ttl=1800)


async def measure(sessions: int) -> dict[str, float | int]:
    # RSS first, without tracemalloc (whose own bookkeeping would count too).
    gc.collect()
    rss_before = rss_kib()
    store = MemoryStore(max_sessions=sessions)
    await fill(store, sessions)
    gc.collect()
    rss_after = rss_kib()
    count = len(store)
    await store.close()
    del store
    gc.collect()

    tracemalloc.start()
    store = MemoryStore(max_sessions=sessions)
    await fill(store, sessions)
    gc.collect()
    traced, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    kept = len(store)

    # The bound: twice max_sessions go in, max_sessions stay, and memory stops growing.
    bound = sessions // 10
    bounded = MemoryStore(max_sessions=bound)
    tracemalloc.start()
    await fill(bounded, bound)
    at_bound, _ = tracemalloc.get_traced_memory()
    await fill(bounded, bound)
    after_double, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    if len(bounded) != bound:
        raise AssertionError(f"max_sessions={bound} kept {len(bounded)} sessions")
    return {
        "sessions": kept,
        "bytes_per_session_tracemalloc": traced / kept,
        "bytes_per_session_rss": (rss_after - rss_before) * 1024 / count,
        "bound": bound,
        "kept_after_double": len(bounded),
        "bytes_at_bound": at_bound,
        "bytes_after_double": after_double,
    }


def describe(result: dict[str, float | int]) -> str:
    return (
        f"{result['sessions']:,} sessions: {result['bytes_per_session_tracemalloc']:.0f} bytes "
        f"each (tracemalloc), {result['bytes_per_session_rss']:.0f} bytes each (RSS growth); "
        f"bound {result['bound']:,}: {result['kept_after_double']:,} sessions kept after "
        f"{2 * int(result['bound']):,} created; memory {result['bytes_at_bound'] / 1e6:.1f} MB "
        f"at the bound, {result['bytes_after_double'] / 1e6:.1f} MB after"
    )


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = await measure(args.sessions)
    print(describe(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))

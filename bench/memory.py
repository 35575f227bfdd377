"""Bytes per session in the memory store, and proof that max_sessions bounds it.

    python bench/memory.py                  # 100,000 sessions, then 2x the bound

Each session is what /login stores: a small user record. Memory is measured two ways:
tracemalloc (Python allocations, exact) and the process RSS (what the operator pays).
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

USER = {"email": "student{}@campus.test", "name": "Student Number {}", "roles": ["student"]}


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def fill(store: MemoryStore, count: int) -> None:
    for i in range(count):
        user = {k: v.format(i) if isinstance(v, str) else v for k, v in USER.items()}
        record = SessionRecord(encode_values({"user": user}), 2_000_000_000, user["email"])
        await store.create(new_session_id(), record, ttl=1800)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    # RSS first, without tracemalloc (whose own bookkeeping would count too).
    gc.collect()
    rss_before = rss_kib()
    store = MemoryStore(max_sessions=args.sessions)
    await fill(store, args.sessions)
    gc.collect()
    rss_after = rss_kib()
    count = len(store)
    await store.close()
    del store
    gc.collect()

    tracemalloc.start()
    store = MemoryStore(max_sessions=args.sessions)
    await fill(store, args.sessions)
    gc.collect()
    traced, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    per_session = traced / len(store)
    print(
        f"{len(store):,} sessions: {per_session:.0f} bytes each (tracemalloc), "
        f"{(rss_after - rss_before) * 1024 / count:.0f} bytes each (RSS growth)"
    )

    # The bound: twice max_sessions go in, max_sessions stay, and memory stops growing.
    bound = args.sessions // 10
    bounded = MemoryStore(max_sessions=bound)
    tracemalloc.start()
    await fill(bounded, bound)
    at_bound, _ = tracemalloc.get_traced_memory()
    await fill(bounded, bound)
    after_double, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(
        f"bound {bound:,}: {len(bounded):,} sessions kept after {2 * bound:,} created; "
        f"memory {at_bound / 1e6:.1f} MB at the bound, {after_double / 1e6:.1f} MB after"
    )
    assert len(bounded) == bound

    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "sessions": len(store),
                    "bytes_per_session_tracemalloc": per_session,
                    "bytes_per_session_rss": (rss_after - rss_before) * 1024 / count,
                    "bound": bound,
                    "kept_after_double": len(bounded),
                    "bytes_at_bound": at_bound,
                    "bytes_after_double": after_double,
                },
                indent=2,
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))

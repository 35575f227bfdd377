"""Failover under load: a primary killed with SIGKILL while two campus processes serve logins.

    python bench/failover.py [--topology sentinel|cluster|both] [--seconds 60] [--users 20]
                             [--min-replicas 1|0] [--json FILE]

Sentinel: one primary, one replica, three Sentinels (quorum 2). Cluster: three primaries with
a replica each. Every Redis runs as docs/stores.md recommends (append-only file, fsync every
second; with ``--min-replicas 1``, ``min-replicas-to-write 1`` and ``min-replicas-max-lag
10``). Two campus processes; a driver (bench/sessiondriver.py) logs users in, reads, logs out
and ends sessions, alternating processes; beside it a witness logs in without ever ending its
sessions, one every 20 ms. At a quarter of the run the primary holding the most of the
witnesses' keys is killed (SIGKILL); it comes back 15 s later (as systemd would bring a
crashed machine's Redis back) and rejoins as a replica.

It counts every answer by status, when the 503s came (each with Retry-After?), any 500 and
any failed connection, how long the topology took to promote the replica, and then reads
every witness session: one that was acknowledged (200 at login) and is gone is a write the
failover lost.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from bench.sessiondriver import Driver, Tally  # noqa: E402
from bench.soak import EMAILS, SETTINGS, users_file  # noqa: E402
from bench.topologies import ClusterTopology, SentinelTopology  # noqa: E402
from tests.support.servers import Campus, production_env  # noqa: E402

BACK_AFTER = 15.0


async def witness(driver: Driver, port: int, found: list[tuple[float, str]], tally: Tally) -> None:
    """Logs in every 20 ms and never ends the session: each 200 is an acknowledged write."""
    body = {"email": EMAILS[-1], "password": "correct horse battery staple"}
    while driver.running:
        response = await driver.call(port, "POST", "/login", body=body)
        if response is not None and response.code == 200:
            cookie = next(
                h.split(";", 1)[0].removeprefix("campus.sid=")
                for h in response.headers.get_list("Set-Cookie")
                if h.startswith("campus.sid=")
            )
            found.append((time.monotonic() - tally.started, cookie))
        await asyncio.sleep(0.02)


async def run(topology_name: str, seconds: float, users: int, min_replicas: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"campus-failover-{topology_name}-") as temp:
        directory = Path(temp)
        topology: SentinelTopology | ClusterTopology = (
            SentinelTopology(directory, min_replicas)
            if topology_name == "sentinel"
            else ClusterTopology(directory, min_replicas)
        )
        topology.start()
        env = production_env(
            topology.url, users_file(directory), **dict(s.split("=", 1) for s in SETTINGS)
        )
        campuses = [Campus(env), Campus(env)]
        try:
            return await measure(topology, campuses, seconds, users)
        finally:
            logs = "".join(c.stop() for c in campuses)
            topology.stop()
            (ROOT / "bench" / f"failover-{topology_name}.log").write_text(
                "\n".join(line for line in logs.splitlines() if " 200 " not in line) + "\n"
            )


async def measure(
    topology: SentinelTopology | ClusterTopology, campuses: list[Campus], seconds: float, users: int
) -> dict[str, Any]:
    tally = Tally()
    ports = [c.port for c in campuses]
    driver = Driver(ports, EMAILS[:-1], users, tally)
    witnesses: list[tuple[float, str]] = []
    events: dict[str, float] = {}

    async def chaos() -> None:
        await asyncio.sleep(seconds / 4)
        victim = topology.victim()
        events["killed"] = time.monotonic() - tally.started
        await asyncio.to_thread(victim.kill)
        while not await asyncio.to_thread(topology.promoted):
            await asyncio.sleep(0.05)
        events["promoted"] = time.monotonic() - tally.started
        await asyncio.sleep(
            max(0.0, events["killed"] + BACK_AFTER - (time.monotonic() - tally.started))
        )
        await asyncio.to_thread(victim.start)  # it rejoins as a replica of the promoted one
        events["back"] = time.monotonic() - tally.started

    tasks = [
        asyncio.create_task(chaos()),
        asyncio.create_task(witness(driver, ports[0], witnesses, tally)),
    ]
    await driver.run(seconds)
    await asyncio.gather(*tasks)
    # Before reading the witnesses back: the topology takes writes again (a login works).
    body = {"email": EMAILS[0], "password": "correct horse battery staple"}
    for _ in range(300):
        response = await driver.call(ports[1], "POST", "/login", body=body)
        if response is not None and response.code == 200:
            break
        await asyncio.sleep(0.1)
    events["writable_again"] = time.monotonic() - tally.started
    lost, unknown = [], 0
    for when, cookie in witnesses:
        response = await driver.call(ports[1], "GET", "/api/me", cookie)
        if response is not None and response.code == 401:
            lost.append(round(when - events["killed"], 3))
        elif response is None or response.code != 200:
            unknown += 1
    last_503 = tally.window(503)
    late = sum(
        counts.get(503, 0)
        for second, counts in tally.per_second.items()
        if second > events["promoted"] + 2 and second < events.get("back", 1e9)
    )
    return {
        "events_s": {k: round(v, 2) for k, v in events.items()},
        "failover_s": round(events["promoted"] - events["killed"], 2),
        "statuses": dict(sorted(tally.statuses.items())),
        "by_route": dict(sorted(tally.by_route.items())),
        "503_seconds": last_503,
        "503_more_than_2s_after_promotion_before_back": late,
        "503_without_retry_after": tally.no_retry_after,
        "logout_500s_at_s": tally.logout_500s,
        "connection_errors": dict(tally.errors),
        "witnesses": len(witnesses),
        "witnesses_before_kill": sum(1 for when, _ in witnesses if when < events["killed"]),
        "lost_acknowledged": len(lost),
        "witnesses_unreadable": unknown,
        "lost_at_s_from_kill": lost[:20],
    }


def machine() -> str:
    """The CPU model, its cores, and the versions measured."""
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
    models = [line.split(":", 1)[1].strip() for line in lscpu if line.startswith("Model name")]
    cores = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    words = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout
    version = words.split()[2].removeprefix("v=")
    model = models[0] if models else platform.processor()
    return f"{model}, {cores} cores, redis-server {version}, redis-py {redis.__version__}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--topology", choices=["sentinel", "cluster", "both"], default="both")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--min-replicas", type=int, choices=[0, 1], default=1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    names = ["sentinel", "cluster"] if args.topology == "both" else [args.topology]
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "min_replicas_to_write": args.min_replicas,
    }
    for name in names:
        report[name] = asyncio.run(run(name, args.seconds, args.users, args.min_replicas))
        print(name, json.dumps(report[name]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    bad = sum(
        report[n]["statuses"].get(500, 0)
        - len(report[n]["logout_500s_at_s"])
        + sum(report[n]["connection_errors"].values())
        + report[n]["503_without_retry_after"]
        for n in names
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

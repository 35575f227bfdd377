"""Soak: two campus processes on one Redis for half an hour, with a Redis restart halfway.

    python bench/soak.py [--minutes 30] [--users 20] [--out bench/soak.json] [--redis-server PATH]

A mix of logins, reads (each on the other process), logouts, "Your sessions" ends and
`campus sessions revoke` every five minutes. Redis runs as the docs recommend (append-only
file, fsync every second) and is restarted (SIGTERM, start) in the middle. Every minute it
samples each campus process's resident memory and open descriptors; at the end it prints
them at the start and at the end, every answer by status, and what was unexpected: any 500,
any failure to connect, any 503 outside the restart, a 503 without Retry-After, a traceback
in a log. Wanted: memory and descriptors flat, nothing unexpected.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import argon2

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.sessiondriver import PASSWORD, Driver, Tally  # noqa: E402
from tests.support.servers import Campus, RedisServer, production_env, run_campus  # noqa: E402

EMAILS = [f"user{n}@campus.test" for n in range(10)]
SETTINGS = (
    "CAMPUS_LOGIN_MAX_FAILURES=1000000",  # one client address logs everybody in
    "CAMPUS_SESSION_SECURE=false",
)


def users_file(directory: Path) -> Path:
    hasher = argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    path = directory / "users.json"
    path.write_text(
        json.dumps([{"email": e, "password_hash": hasher.hash(PASSWORD)} for e in EMAILS])
    )
    return path


def sample(process_id: int) -> dict[str, int]:
    status = Path(f"/proc/{process_id}/status").read_text()
    rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    return {"rss_kib": rss, "fds": len(list(Path(f"/proc/{process_id}/fd").iterdir()))}


async def soak(
    minutes: float, users: int, directory: Path, binary: str | None
) -> dict[str, object]:
    redis = RedisServer(
        directory, "--appendonly", "yes", "--appendfsync", "everysec", binary=binary
    )
    redis.start()
    env = production_env(
        redis.url, users_file(directory), **dict(s.split("=", 1) for s in SETTINGS)
    )
    campuses = [Campus(env), Campus(env)]
    tally = Tally()
    driver = Driver([c.port for c in campuses], EMAILS, users, tally)
    samples: list[dict[str, object]] = []
    restart: dict[str, float] = {}
    revokes = 0
    seconds = minutes * 60

    async def watch() -> None:
        nonlocal revokes
        next_sample = next_revoke = 0.0
        restarted = False
        while driver.running:
            now = time.monotonic() - tally.started
            if now >= next_sample:
                samples.append(
                    {
                        "t": round(now),
                        **{f"campus{n}": sample(c.process.pid) for n, c in enumerate(campuses)},
                        "redis_keys": redis.client().dbsize(),
                    }
                )
                next_sample += 60
            if now >= next_revoke and now > 0:
                result = await asyncio.to_thread(run_campus, env, "sessions", "revoke", EMAILS[0])
                revokes += result.returncode == 0
                next_revoke += 300
            if not restarted and now >= seconds / 2:
                restarted = True
                restart["stopped"] = time.monotonic() - tally.started
                await asyncio.to_thread(redis.stop)
                await asyncio.to_thread(redis.start)
                restart["started"] = time.monotonic() - tally.started
            await asyncio.sleep(1)

    watcher = asyncio.create_task(watch())
    await driver.run(seconds)
    await watcher
    final = {f"campus{n}": sample(c.process.pid) for n, c in enumerate(campuses)}
    logs = [c.stop() for c in campuses]
    redis.stop()
    (directory / "campus.log").write_text("".join(logs))
    window = (restart["stopped"] - 1, restart["started"] + 5)
    stray_503 = sum(
        counts.get(503, 0)
        for second, counts in tally.per_second.items()
        if not window[0] <= second <= window[1]
    )
    return {
        "minutes": minutes,
        "users": users,
        "statuses": dict(sorted(tally.statuses.items())),
        "by_route": dict(sorted(tally.by_route.items())),
        "logout_500s_at": tally.logout_500s,
        "other_500s": tally.statuses.get(500, 0)
        - len(tally.logout_500s)
        + sum(1 for t in tally.logout_500s if not window[0] <= t <= window[1]),
        "connection_errors": dict(tally.errors),
        "503_window_seconds": tally.window(503),
        "redis_restart_seconds": [round(restart["stopped"], 1), round(restart["started"], 1)],
        "503_outside_restart": stray_503,
        "503_without_retry_after": tally.no_retry_after,
        "revokes": revokes,
        "tracebacks": sum(log.count("Traceback") for log in logs),
        "samples": samples,
        "final": final,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "soak.json")
    parser.add_argument("--redis-server", help="a redis-server binary other than PATH's")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="campus-soak-") as directory:
        result = asyncio.run(soak(args.minutes, args.users, Path(directory), args.redis_server))
        # The lines worth reading afterwards: everything but the access log's 2xx/4xx.
        lines = (Path(directory) / "campus.log").read_text().splitlines()
        kept = [line for line in lines if not any(f" {s}" in line for s in ("200 ", "401 "))]
        args.out.with_suffix(".log").write_text("\n".join(kept) + "\n")
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    samples, last = result["samples"], result["final"]
    first = samples[1] if len(samples) > 1 else samples[0]  # type: ignore[index, arg-type]
    for name in ("campus0", "campus1"):  # from the first minute on: connections are made
        print(f"{name}: at {first['t']} s {first[name]}  at the end {last[name]}")  # type: ignore[index]
    # A logout whose store fails answers 500 "Could not log out." by contract: expected only
    # while Redis restarts.
    unexpected = (
        result["other_500s"]  # type: ignore[operator]
        + sum(result["connection_errors"].values())  # type: ignore[attr-defined]
        + result["503_outside_restart"]  # type: ignore[operator]
        + result["503_without_retry_after"]
        + result["tracebacks"]
    )
    print(json.dumps({k: v for k, v in result.items() if k not in ("samples", "final")}))
    print(f"unexpected: {unexpected}")
    return 1 if unexpected else 0


if __name__ == "__main__":
    sys.exit(main())

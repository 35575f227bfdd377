"""What device binding (DBSC) costs: per API request, per refresh, per session in the store.

    python bench/device_binding.py                 # memory store
    python bench/device_binding.py --redis URL     # also Redis's own MEMORY USAGE per record

1. The hot path: a session's part of every API request (``SessionHandler.prepare()``: load
   from the store, then the binding check) for an unbound session and for a bound one with
   its bound cookie, timed in-process so that HTTP and the client add nothing to either.
2. A refresh: how many requests it takes (with the challenge handed out before, and
   without), and the CPU of the proof check alone (ES256 and RS256).
3. The store: bytes of an unbound and a bound session's record (the JSON every store keeps).

The client is the test suite's DBSC client (tests/support/dbsc.py) against a real campus
app on a free port; run it from the repository root.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import argon2
import tornado.httputil
from tornado.httpclient import AsyncHTTPClient
from tornado.httpserver import HTTPServer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's campus

from campus.config import Argon2Params, Config, RedisConfig, SessionConfig, UsersConfig
from campus.session.store import encode_record
from campus.web.app import make_app
from campus.web.binding import policy as device_binding
from campus.web.binding.proof import refresh_proof, registration_proof
from campus.web.handlers.auth import MeHandler
from campus.web.services import build_services
from tests.support.dbsc import DbscClient, compact, new_key, public_jwk

PASSWORD = "correct horse battery staple"
EMAIL = "ann@campus.test"


class _Connection:
    """What a RequestHandler needs of its connection when it is only prepared, never answered."""

    def set_close_callback(self, callback: Any) -> None:
        pass


def request(cookies: dict[str, str]) -> tornado.httputil.HTTPServerRequest:
    header = "; ".join(f"{name}={value}" for name, value in cookies.items())
    headers = tornado.httputil.HTTPHeaders({"Cookie": header, "Host": "127.0.0.1"})
    start = tornado.httputil.RequestStartLine("GET", "/api/me", "HTTP/1.1")
    return tornado.httputil.HTTPServerRequest(
        start_line=start,
        headers=headers,
        connection=_Connection(),  # type: ignore[arg-type]
    )


async def per_call(work: Callable[[], Awaitable[Any]], seconds: float) -> tuple[float, float]:
    """Median wall microseconds per call over 5 rounds, and CPU microseconds per call."""
    rounds, cpu_total, calls = [], 0.0, 0
    for _ in range(5):
        count, start, cpu = 0, time.perf_counter(), time.process_time()
        while time.perf_counter() - start < seconds / 5:
            await work()
            count += 1
        rounds.append((time.perf_counter() - start) / count * 1e6)
        cpu_total += time.process_time() - cpu
        calls += count
    return statistics.median(rounds), cpu_total / calls * 1e6


async def main(args: argparse.Namespace) -> None:
    folder = Path(tempfile.mkdtemp(prefix="campus-bench-dbsc-"))
    hasher = argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    users = folder / "users.json"
    users.write_text(json.dumps([{"email": EMAIL, "password_hash": hasher.hash(PASSWORD)}]))
    store = "redis" if args.redis else "memory"
    config = Config(
        session=SessionConfig(store=store),
        redis=RedisConfig(url=args.redis) if args.redis else RedisConfig(),
        users=UsersConfig(
            file=str(users), argon2=Argon2Params(memory_kib=8, time_cost=1, parallelism=1)
        ),
    )
    services = build_services(config)
    app = make_app(services)
    server = HTTPServer(app)
    [sock] = tornado.netutil.bind_sockets(0, "127.0.0.1")
    server.add_sockets([sock])
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    http = AsyncHTTPClient(force_instance=True)

    unbound = DbscClient(http, base)
    assert (await unbound.login(EMAIL, PASSWORD)).code == 200
    bound = DbscClient(http, base)
    assert (await bound.login(EMAIL, PASSWORD)).code == 200
    assert (await bound.register()).code == 200
    bound_rsa = DbscClient(http, base, "RS256")
    assert (await bound_rsa.login(EMAIL, PASSWORD)).code == 200
    assert (await bound_rsa.register()).code == 200

    print(f"store: {store}")
    print("\n1. the session's part of one API request (SessionHandler.prepare)")
    results = {}
    for name, client in (("unbound", unbound), ("bound", bound)):

        async def prepare(client: DbscClient = client) -> None:
            handler = MeHandler(app, request(client.cookies))
            await handler.prepare()
            assert handler.current_user is not None

        await per_call(prepare, 0.5)  # warm up (verification caches, store)
        results[name] = await per_call(prepare, args.seconds)
        wall, cpu = results[name]
        print(f"   {name:8} {wall:7.1f} µs wall   {cpu:7.1f} µs CPU")
    extra = results["bound"][1] - results["unbound"][1]
    print(f"   bound costs {extra:+.1f} µs CPU per request ({extra / results['unbound'][1]:+.0%})")
    for name, client in (("unbound", unbound), ("bound", bound)):
        handler = MeHandler(app, request(client.cookies))
        await handler.prepare()

        async def check(handler: MeHandler = handler) -> None:
            device_binding.enforce(handler)

        wall, cpu = await per_call(check, args.seconds / 2)
        print(f"   the binding check alone, {name:8} {cpu:5.1f} µs CPU")

    print("\n2. a refresh")
    statuses = await bound.refresh_until_done()
    print(f"   with the challenge handed out before: {len(statuses)} request(s) {statuses}")
    bound.cached_challenge = None
    statuses = await bound.refresh_until_done()
    print(f"   without one (first refresh after a restart of the browser): {statuses}")
    for alg in ("ES256", "RS256"):
        key = new_key(alg)
        header = {"alg": alg, "typ": "dbsc+jwt"}
        registration = compact({**header, "jwk": public_jwk(key)}, {"jti": "c" * 43}, key)
        refresh = compact(header, {"jti": "c" * 43}, key)
        proof = registration_proof(registration)
        assert proof.jwk is not None

        async def check(
            token: str = refresh, jwk: dict[str, str] = proof.jwk, alg: str = alg
        ) -> None:
            refresh_proof(token, alg=alg, jwk=jwk)

        async def register(token: str = registration) -> None:
            registration_proof(token)

        _, cpu = await per_call(check, args.seconds / 2)
        _, reg_cpu = await per_call(register, args.seconds / 2)
        print(f"   {alg}: refresh proof {cpu:6.1f} µs CPU, registration proof {reg_cpu:6.1f} µs")
    refresh_timing = []
    for _ in range(50):
        start = time.perf_counter()
        assert (await bound.refresh_until_done()) == [200]
        refresh_timing.append((time.perf_counter() - start) * 1e3)
    print(
        f"   a whole refresh over HTTP (client signing included): "
        f"median {statistics.median(refresh_timing):.2f} ms"
    )

    print("\n3. the store: one session's record")
    for name, client in (("unbound", unbound), ("bound", bound), ("bound-rsa", bound_rsa)):
        cookie = client.cookies["campus.sid"]
        sid = services.sessions.signer.verify("campus.sid", cookie, max_age=1e9)
        assert sid is not None
        record = await services.sessions.store.load(sid[0], touch=None)
        assert record is not None
        size = len(encode_record(record).encode())
        keys = sorted(record.data)
        challenges = sum(key.startswith("device_challenge:") for key in keys)
        others = ", ".join(key for key in keys if not key.startswith("device_challenge:"))
        line = f"   {name:9} {size:5d} bytes of JSON   keys: {others} + {challenges} challenge(s)"
        if args.redis:
            import hashlib

            import redis

            key = config.redis.prefix + hashlib.sha256(sid[0].encode()).hexdigest()
            usage = redis.Redis.from_url(args.redis).memory_usage(key)
            line += f"   Redis MEMORY USAGE {usage} bytes"
        print(line)
    http.close()
    server.stop()
    await services.sessions.store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis", help="a Redis URL (never a shared one: keys are written)")
    parser.add_argument("--seconds", type=float, default=5.0, help="per measurement")
    asyncio.run(main(parser.parse_args()))

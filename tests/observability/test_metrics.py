"""GET /metrics: who may read it, and that what it counts is what happened."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tornado.web
from prometheus_client.parser import text_string_to_metric_families
from tornado.ioloop import IOLoop

from campus.accounts.users import UserDirectory
from campus.config import Config, MetricsConfig, ServerConfig
from campus.observability.metrics import REQUEST_BUCKETS, Metrics, TimedStore, timed_store, unwrap
from campus.runtime.serve import _sweeper
from campus.session.contract import ContractClock
from campus.session.store import SessionRecord, StoreUnavailable
from campus.session.stores.memory import MemoryStore
from campus.web.app import make_app
from campus.web.services import Services, build_sessions
from tests.support.apps import PASSWORD, DownStore, Fetch, closing_store, make_store
from tests.support.servers import REPO

TOKEN = "metrics-token-0123456789abcdef"


def build(config: Config, clock: Any, store: Any = None) -> Services:
    metrics = Metrics()
    store = timed_store(store or make_store(config, clock), metrics)
    return Services(
        config=config,
        sessions=build_sessions(config, store, clock=clock),
        users=UserDirectory.load(config.users.file),
        metrics=metrics,
    )


@pytest.fixture
def services(
    request: pytest.FixtureRequest, config: Config, clock: ContractClock, io_loop: IOLoop
) -> Iterator[Services]:
    marker = request.node.get_closest_marker("metrics_config")
    overrides = marker.kwargs if marker else {}
    if "token" in overrides:
        config = dataclasses.replace(config, metrics=MetricsConfig(token=overrides["token"]))
    if overrides.get("trust_proxy"):
        config = dataclasses.replace(config, server=ServerConfig(trust_proxy=True))
    if overrides.get("down"):
        yield build(config, clock, DownStore())  # nothing to close
        return
    services = build(config, clock)
    if "enabled" in overrides:
        services = dataclasses.replace(services, metrics=None)
    yield from closing_store(services, io_loop)


async def scrape(fetch: Fetch, **kwargs: Any) -> dict[tuple[str, Any], float]:
    response = await fetch("/metrics", **kwargs)
    assert response.code == 200, response.body
    samples = {}
    for family in text_string_to_metric_families(response.body.decode()):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: dict[tuple[str, Any], float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def login_body(password: str = PASSWORD) -> str:
    return json.dumps({"email": "ann@campus.test", "password": password})


@pytest.mark.gen_test
async def test_loopback_clients_read_prometheus_text(fetch: Fetch) -> None:
    response = await fetch("/metrics")
    assert response.code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    names = {f.name for f in text_string_to_metric_families(response.body.decode())}
    assert names >= {
        "campus_http_requests",
        "campus_http_request_duration_seconds",
        "campus_http_requests_in_flight",
        "campus_logins",
        "campus_sessions_created",
        "campus_sessions_destroyed",
        "campus_process_resident_memory_bytes",
    }
    assert all(name.startswith("campus_") for name in names)
    assert b"_created" not in response.body.replace(b"campus_sessions_created", b"")


@pytest.mark.gen_test
async def test_a_forwarded_request_is_not_a_loopback_client(fetch: Fetch) -> None:
    """nginx on the same machine connects from 127.0.0.1: its requests must not count."""
    for header in ("X-Forwarded-For", "X-Real-IP", "Forwarded"):
        response = await fetch("/metrics", headers={header: "203.0.113.9"})
        assert response.code == 404, header
        assert json.loads(response.body) == {"errorMessage": "Not found"}


@pytest.mark.metrics_config(trust_proxy=True)
@pytest.mark.gen_test
async def test_behind_a_trusted_proxy_a_remote_client_is_refused(fetch: Fetch) -> None:
    response = await fetch("/metrics", headers={"X-Forwarded-For": "203.0.113.9"})
    assert response.code == 404


@pytest.mark.metrics_config(token=TOKEN)
@pytest.mark.gen_test
async def test_with_a_token_every_client_must_present_it(fetch: Fetch) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        response = await fetch("/metrics", headers=headers)
        assert response.code == 404, headers  # loopback included
    good = {"Authorization": f"Bearer {TOKEN}", "X-Forwarded-For": "203.0.113.9"}
    assert (await fetch("/metrics", headers=good)).code == 200
    lower = {"Authorization": f"bearer {TOKEN}"}  # the scheme's name is case-insensitive
    assert (await fetch("/metrics", headers=lower)).code == 200
    # Without the token, every method gets the 404 of a path that does not exist.
    for method in ("POST", "HEAD", "DELETE"):
        body = b"" if method == "POST" else None
        response = await fetch("/metrics", method=method, body=body)
        assert response.code == 404, method
    response = await fetch("/metrics", method="POST", body=b"", headers=good)
    assert response.code == 405 and response.headers["Allow"] == "GET, HEAD"


@pytest.mark.metrics_config(enabled=False)
@pytest.mark.gen_test
async def test_metrics_off_is_a_json_404_not_the_spa_shell(fetch: Fetch) -> None:
    response = await fetch("/metrics")
    assert response.code == 404
    assert json.loads(response.body) == {"errorMessage": "Not found"}


@pytest.mark.gen_test
async def test_requests_are_counted_by_route_pattern_never_the_raw_path(fetch: Fetch) -> None:
    for path in ("/courses/1", "/courses/2", "/api/nothing/42", "/api/me"):
        await fetch(path)
    await fetch("/api/me", method="BREW", allow_nonstandard_methods=True)
    samples = await scrape(fetch)
    total = "campus_http_requests_total"
    assert value(samples, total, route="/(.*)", method="GET", status="200") == 2
    assert value(samples, total, route="(none)", method="GET", status="404") == 1
    assert value(samples, total, route="/api/me", method="GET", status="401") == 1
    assert value(samples, total, route="/api/me", method="other", status="405") == 1
    metrics = Metrics()
    for n in range(1000):  # any token is a method: they must not grow anything
        metrics.request("/api/me", f"M{n}", 405, 0.001)
    assert metrics.tally is not None and len(metrics.tally.counts) == 1
    assert not [key for key in samples if "courses" in str(key) or "nothing" in str(key)]
    count = "campus_http_request_duration_seconds_count"
    assert value(samples, count, route="/(.*)") == 2
    buckets = {dict(labels)["le"] for name, labels in samples if name.endswith("_bucket")}
    assert {"0.0005", "2.0", "+Inf"} <= buckets
    assert REQUEST_BUCKETS[0] == 0.0005 and REQUEST_BUCKETS[-1] == 2.0


def test_request_counts_read_at_scrape_match_prometheus_clients_own() -> None:
    """One process counts requests in plain numbers: at a scrape they must read exactly as
    prometheus-client's Counter and Histogram fed the same requests would."""
    from prometheus_client import CollectorRegistry, Counter, Histogram
    from prometheus_client.exposition import generate_latest

    registry = CollectorRegistry(auto_describe=False)
    counter = Counter("campus_http_requests", "-", ["route", "method", "status"], registry=registry)
    histogram = Histogram(
        "campus_http_request_duration_seconds",
        "-",
        ["route"],
        buckets=REQUEST_BUCKETS,
        registry=registry,
    )
    metrics = Metrics()
    seen = [0.0005, 0.0004, 0.001, 0.0011, 2.0, 3.5, 0.0]  # on bounds, between, past the last
    for n, seconds in enumerate(seen):
        route, status = ("/api/me", 200) if n % 2 else ("/login", 403)
        metrics.request(route, "GET", status, seconds)
        counter.labels(route, "GET", str(status)).inc()
        histogram.labels(route).observe(seconds)

    def samples(text: bytes) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        wanted = ("campus_http_requests", "campus_http_request_duration_seconds")
        return {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text.decode())
            if family.name in wanted
            for sample in family.samples
            if not sample.name.endswith("_created")
        }

    ours = samples(metrics.exposition(None)[0])
    assert ours and ours == samples(generate_latest(registry))


@pytest.mark.gen_test
async def test_logins_by_outcome_and_sessions_by_cause(fetch: Fetch) -> None:
    post = {"method": "POST"}
    response = await fetch("/login", body=login_body(), **post)
    assert response.code == 200
    cookie = response.headers["Set-Cookie"].split(";", 1)[0]
    again = await fetch("/login", body=login_body(), headers={"Cookie": cookie}, **post)
    cookie = again.headers["Set-Cookie"].split(";", 1)[0]  # regenerated: the old one went
    assert (await fetch("/login", body=login_body("no"), **post)).code == 403
    assert (await fetch("/login", body="[]", **post)).code == 400
    forged = {"Origin": "https://evil.example"}
    response = await fetch("/login", body="{}", headers=forged, **post)
    assert response.code == 403
    assert (await fetch("/logout", headers={"Cookie": cookie})).code == 200
    assert (await fetch("/logout")).code == 200  # nobody to log out
    samples = await scrape(fetch)
    logins = {o: value(samples, "campus_logins_total", outcome=o) for o in ("success", "denied")}
    assert logins == {"success": 2, "denied": 1}
    assert value(samples, "campus_logins_total", outcome="bad_request") == 1
    assert value(samples, "campus_logins_total", outcome="refused") == 1
    assert value(samples, "campus_sessions_created_total") == 2
    destroyed = "campus_sessions_destroyed_total"
    assert value(samples, destroyed, cause="regenerate") == 1
    assert value(samples, destroyed, cause="logout") == 1
    ops = "campus_store_operation_duration_seconds_count"
    assert value(samples, ops, operation="load", store="memory") >= 2
    assert value(samples, ops, operation="create", store="memory") == 2


@pytest.mark.gen_test
async def test_throttled_logins_are_counted(fetch: Fetch) -> None:
    for _ in range(6):
        await fetch("/login", method="POST", body=login_body("x"))
    samples = await scrape(fetch)
    assert value(samples, "campus_logins_total", outcome="denied") == 5
    assert value(samples, "campus_logins_total", outcome="throttled") == 1


@pytest.mark.metrics_config(down=True)
@pytest.mark.gen_test
async def test_store_failures_are_counted_by_operation(fetch: Fetch) -> None:
    cookie = {"Cookie": "campus.sid=" + "x" * 10}
    assert (await fetch("/healthz")).code == 503
    await fetch("/login", method="POST", body=login_body())
    samples = await scrape(fetch, headers=cookie)
    failures = "campus_store_failures_total"
    assert value(samples, failures, operation="ping", store="down") == 1
    assert value(samples, failures, operation="reserve", store="down") == 1
    assert value(samples, "campus_logins_total", outcome="error") == 1


def test_the_memory_sweep_counts_expired_sessions(clock: ContractClock) -> None:
    metrics = Metrics()
    store = MemoryStore(max_sessions=10, clock=clock)
    for sid in ("a", "b"):
        store._put(sid, SessionRecord({}, int(clock()) + 100), clock() + 10)
    clock.advance(20)
    _sweeper(store, metrics)()
    assert metrics.destroyed.labels("expiry")._value.get() == 2


@pytest.mark.gen_test
async def test_the_store_proxy_times_any_coroutine_method_and_passes_the_rest() -> None:
    class Store:
        name = "custom"
        client = object()

        async def end_handle(self, handle: str) -> int:  # a method stores may gain later
            return 7

        async def ping(self) -> None:
            raise StoreUnavailable("down")

    metrics = Metrics()
    inner = Store()
    proxy = TimedStore(inner, metrics)  # type: ignore[arg-type]
    assert await proxy.end_handle("h") == 7
    with pytest.raises(StoreUnavailable):
        await proxy.ping()
    behind: object = unwrap(proxy)
    assert proxy.client is inner.client and behind is inner
    text = metrics.exposition(None)[0].decode()
    timed = 'campus_store_operation_duration_seconds_count{operation="end_handle",store="custom"}'
    assert f"{timed} 1.0" in text
    assert 'campus_store_failures_total{operation="ping",store="custom"} 1.0' in text


@pytest.mark.slow
def test_several_processes_share_their_counts() -> None:
    """Multiprocess mode: any worker answering a scrape reports every worker's requests."""
    script = textwrap.dedent(
        """
        import os, sys
        from campus.observability.metrics import Metrics, share_between_processes
        directory = share_between_processes()
        print(directory)
        children = []
        for n in (1, 2):
            pid = os.fork()
            if pid == 0:
                metrics = Metrics()
                for _ in range(n * 10):
                    metrics.request("/api/me", "GET", 200, 0.001)
                metrics.track_in_flight(lambda: n)()
                os._exit(0)
            children.append(pid)
        for pid in children:
            os.waitpid(pid, 0)
        sys.stdout.write(Metrics().exposition(None)[0].decode())
        """
    )
    output = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    assert 'campus_http_requests_total{method="GET",route="/api/me",status="200"} 30.0' in output
    assert "campus_http_requests_in_flight 0.0" in output  # both exited: their gauges dropped
    assert "campus_process_" not in output  # one process's numbers mean nothing summed
    assert not Path(output.splitlines()[0]).exists()  # removed when the parent exited


@pytest.fixture
def app(services: Services) -> tornado.web.Application:
    return make_app(services, root=str(REPO))


@pytest.mark.gen_test
async def test_sessions_ended_by_their_user_are_counted(fetch: Fetch) -> None:
    cookies = []
    for _ in range(3):
        response = await fetch("/login", method="POST", body=login_body())
        cookies.append({"Cookie": response.headers["Set-Cookie"].split(";", 1)[0]})
    listed = await fetch("/api/sessions", headers=cookies[0])
    other = next(s["handle"] for s in json.loads(listed.body)["sessions"] if not s["current"])
    path = f"/api/sessions/{other}"
    response = await fetch(path, method="DELETE", headers=cookies[0])
    assert response.code == 200
    response = await fetch(
        "/api/sessions/end-others",
        method="POST",
        body="",
        headers=cookies[0],
    )
    assert json.loads(response.body) == {"ended": 1}
    mine = json.loads((await fetch("/api/sessions", headers=cookies[0])).body)
    path = f"/api/sessions/{mine['sessions'][0]['handle']}"
    assert (await fetch(path, method="DELETE", headers=cookies[0])).code == 200
    samples = await scrape(fetch)
    destroyed = "campus_sessions_destroyed_total"
    assert value(samples, destroyed, cause="user") == 2
    assert value(samples, destroyed, cause="logout") == 1  # ending the current one

"""What GET /metrics reports, counted with prometheus-client. No module-level registry.

One :class:`Metrics` per process holds every family; names start ``campus_`` and labels are
bounded (routes by their pattern, methods from a fixed list, store operations by name).

- Requests: ``campus_http_requests_total{route,method,status}``, the latency histogram
  ``campus_http_request_duration_seconds{route}`` (buckets from 0.5 ms to 2 s) and
  ``campus_http_requests_in_flight``, counted by the application's ``log_function``; in one
  process as plain numbers read at each scrape (:class:`RequestTally`).
- Logins: ``campus_logins_total{outcome}``: success, denied, throttled, busy (every place
  for a password check taken), abandoned (the client left before its check ran),
  bad_request, refused (another origin), error (5xx).
- Store: every call through :class:`TimedStore` feeds
  ``campus_store_operation_duration_seconds{operation,store}``; a ``StoreUnavailable`` adds
  to ``campus_store_failures_total{operation,store}``.
- Sessions: ``campus_sessions_created_total``, ``campus_sessions_destroyed_total{cause}``
  (regenerate, logout, expiry, user, revoke), counted where the cause is known.
- Device-bound sessions (DBSC): ``campus_device_binding_registrations_total``,
  ``campus_device_binding_refreshes_total``, ``campus_device_binding_failed_proofs_total
  {endpoint,reason}``, ``campus_device_binding_skipped_total{reason}`` (the browser's
  ``Secure-Session-Skipped`` reports) and ``campus_device_binding_refused_total{cause}``.
- The process collector: ``campus_process_*`` (CPU, memory, descriptors) in one-process mode.

Several processes behind one port (``[server] processes``) share a directory of memory-mapped
files (prometheus-client's multiprocess mode: the parent calls :func:`share_between_processes`
before forking): any worker answering a scrape reports the sums over all of them.
"""

from __future__ import annotations

import atexit
import bisect
import glob
import inspect
import os
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any, cast

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    values,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from campus.session.store import SessionStore, StoreUnavailable

#: Request latency, seconds: 0.5 ms to 2 s.
REQUEST_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
#: Store latency, seconds: a Redis round trip is ~0.2 ms, its timeout 1 s.
STORE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.25, 1.0)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
LOGIN_OUTCOMES = (
    "success",
    "denied",
    "throttled",
    "busy",
    "abandoned",
    "bad_request",
    "refused",
    "error",
)
DESTROY_CAUSES = ("regenerate", "logout", "expiry", "user", "revoke", "removed")
# Device-bound sessions: every label value there is, so the series exist from the start.
BINDING_ENDPOINTS = ("registration", "refresh")
BINDING_PROOF_FAILURES = (
    "missing",
    "malformed",
    "type",
    "algorithm",
    "key",
    "signature",
    "challenge",
)
BINDING_SKIPPED = ("unreachable", "server_error", "quota_exceeded", "other")
BINDING_REFUSALS = ("missing", "invalid", "unbound")
_MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
REQUESTS = "campus_http_requests"
REQUESTS_HELP = "HTTP requests answered, by route pattern, method and status."
LATENCY = "campus_http_request_duration_seconds"
LATENCY_HELP = "Time from a request's headers to its response's end, by route pattern."


def use_multiprocess(directory: str) -> None:
    """Count in memory-mapped files under *directory*, shared by every worker process.

    Call once in the parent, before forking and before any :class:`Metrics` exists; the
    directory must be empty (a fresh one per run) and writable.
    """
    os.environ[_MULTIPROC_ENV] = directory
    values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]


def share_between_processes() -> str:
    """Multiprocess mode in a fresh temporary directory, removed when this process exits
    (not when a forked worker does). For the parent of ``[server] processes = N``, before
    it forks; returns the directory."""
    directory = tempfile.mkdtemp(prefix="campus-metrics-")
    parent = os.getpid()

    def remove() -> None:
        if os.getpid() == parent:
            shutil.rmtree(directory, ignore_errors=True)

    atexit.register(remove)
    use_multiprocess(directory)
    return directory


def multiprocess_dir() -> str | None:
    return os.environ.get(_MULTIPROC_ENV) or None


class Metrics:
    """Every metric family of one process, in its own registry."""

    def __init__(self) -> None:
        # No *_created series: nobody graphs them, and each costs a line per series.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.directory = multiprocess_dir()
        self.registry = registry = CollectorRegistry(auto_describe=False)
        if self.directory is None:  # per-process numbers have no meaning summed
            ProcessCollector(namespace="campus", registry=registry)
        if self.directory is None:
            # One process: requests are counted in plain numbers, read at each scrape.
            self.tally: RequestTally | None = RequestTally()
            registry.register(self.tally)
        else:  # several: each worker's counts live in the shared files
            self.tally = None
            self.requests = Counter(
                REQUESTS, REQUESTS_HELP, ["route", "method", "status"], registry=registry
            )
            self.latency = Histogram(
                LATENCY, LATENCY_HELP, ["route"], buckets=REQUEST_BUCKETS, registry=registry
            )
        self.in_flight = Gauge(
            "campus_http_requests_in_flight",
            "Requests started and not yet answered.",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.store_latency = Histogram(
            "campus_store_operation_duration_seconds",
            "Session store calls, by operation and store, failures included.",
            ["operation", "store"],
            buckets=STORE_BUCKETS,
            registry=registry,
        )
        self.store_failures = Counter(
            "campus_store_failures",
            "Session store calls that failed (the store was unavailable).",
            ["operation", "store"],
            registry=registry,
        )
        self.logins = Counter(
            "campus_logins", "POST /login answers, by outcome.", ["outcome"], registry=registry
        )
        self.created = Counter(
            "campus_sessions_created",
            "Sessions written to the store for the first time.",
            registry=registry,
        )
        self.destroyed = Counter(
            "campus_sessions_destroyed",
            "Sessions ended, by cause, where the cause is known.",
            ["cause"],
            registry=registry,
        )
        # -- device-bound sessions (campus.web.binding) --
        self.binding_registrations = Counter(
            "campus_device_binding_registrations",
            "Sessions bound to a device key (registration proofs accepted).",
            registry=registry,
        )
        self.binding_refreshes = Counter(
            "campus_device_binding_refreshes",
            "Short-lived bound cookies renewed against a signed challenge.",
            registry=registry,
        )
        self.binding_failed_proofs = Counter(
            "campus_device_binding_failed_proofs",
            "Registration and refresh proofs refused, by endpoint and reason.",
            ["endpoint", "reason"],
            registry=registry,
        )
        self.binding_skipped = Counter(
            "campus_device_binding_skipped",
            "Requests whose browser reported a skipped refresh (Secure-Session-Skipped).",
            ["reason"],
            registry=registry,
        )
        self.binding_refused = Counter(
            "campus_device_binding_refused",
            "Requests of a bound (or, when required, unbound) session refused, by cause.",
            ["cause"],
            registry=registry,
        )
        # -- end device-bound sessions --
        for outcome in LOGIN_OUTCOMES:  # every series exists from the start, at 0
            self.logins.labels(outcome)
        for cause in DESTROY_CAUSES:
            self.destroyed.labels(cause)
        for endpoint in BINDING_ENDPOINTS:
            for reason in BINDING_PROOF_FAILURES:
                self.binding_failed_proofs.labels(endpoint, reason)
        for reason in BINDING_SKIPPED:
            self.binding_skipped.labels(reason)
        for cause in BINDING_REFUSALS:
            self.binding_refused.labels(cause)
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one answered request (the hot path: no lock, no label lookup in one process;
        labelled children cached in several)."""
        if method not in METHODS:  # a client may send any token: one key for them all
            method = "other"
        if self.tally is not None:
            self.tally.add(route, method, status, seconds)
            return
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:
            counter = self.requests.labels(route, method, str(status))
            children = (counter, self.latency.labels(route))
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def track_in_flight(self, count: Callable[[], int]) -> Callable[[], None] | None:
        """Report ``count()`` as the requests in flight.

        One process: read at each scrape. Several: a file per worker can only hold a value,
        so the returned function must be called periodically to copy it there.
        """
        if self.directory is None:
            self.in_flight.set_function(count)
            return None
        return lambda: self.in_flight.set(count())

    def session_destroyed(self, cause: str, count: int = 1) -> None:
        if count:
            self.destroyed.labels(cause).inc(count)

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """The body and content type for a scrape, in the format the scraper prefers."""
        encoder, content_type = choose_encoder(accept or "")
        if self.directory is None:
            return encoder(self.registry), content_type
        _forget_dead_workers(self.directory)
        registry = CollectorRegistry(auto_describe=False)
        MultiProcessCollector(registry, path=self.directory)  # type: ignore[no-untyped-call]
        return encoder(registry), content_type


class RequestTally(Collector):
    """``campus_http_requests_total`` and the latency histogram of one process, kept as plain
    numbers and turned into metric families at each scrape.

    prometheus-client's children take a lock per increment, and a histogram walks its
    buckets in Python with one per bucket: on every request, for numbers read a few times a
    minute. Here a request costs two dictionary lookups, a bisection and three additions.
    The event loop's thread is the only writer and the scrape runs on it too.
    """

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str, int], int] = {}
        # Per route: the count in each bucket (not cumulative; the last is +Inf), then the sum.
        self.latency: dict[str, list[float]] = {}
        # The labels prometheus-client's own Histogram would give the bounds ("0.0005", "2.0").
        bounds = [floatToGoString(bound) for bound in REQUEST_BUCKETS]  # type: ignore[no-untyped-call]
        self._bounds: list[str] = [*bounds, "+Inf"]

    def add(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        self.counts[key] = self.counts.get(key, 0) + 1
        histogram = self.latency.get(route)
        if histogram is None:
            histogram = self.latency[route] = [0.0] * (len(REQUEST_BUCKETS) + 2)
        histogram[bisect.bisect_left(REQUEST_BUCKETS, seconds)] += 1  # le: upper bound included
        histogram[-1] += seconds

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            REQUESTS, REQUESTS_HELP, labels=["route", "method", "status"]
        )
        for (route, method, status), requested in self.counts.items():
            requests.add_metric([route, method, str(status)], requested)
        yield requests
        latency = HistogramMetricFamily(LATENCY, LATENCY_HELP, labels=["route"])
        for route, histogram in self.latency.items():
            cumulative: list[tuple[str, float]] = []
            total = 0.0
            for bound, count in zip(self._bounds, histogram, strict=False):
                total += count
                cumulative.append((bound, total))
            latency.add_metric([route], cumulative, histogram[-1])
        yield latency


def _forget_dead_workers(directory: str) -> None:
    """Drop the in-flight gauge of workers that exited (a restarted worker has a new pid)."""
    for path in glob.glob(os.path.join(directory, "gauge_live*_*.db")):
        pid = os.path.basename(path).rsplit("_", 1)[1].removesuffix(".db")
        if pid.isdigit() and not _alive(int(pid)):
            mark_process_dead(int(pid), directory)  # type: ignore[no-untyped-call]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def count_sessions_destroyed(settings: Mapping[str, Any], cause: str, count: int = 1) -> None:
    """For handlers: ``count_sessions_destroyed(self.settings, "user", n)``; a no-op when
    metrics are off."""
    metrics = settings.get("metrics")
    if isinstance(metrics, Metrics):
        metrics.session_destroyed(cause, count)


class TimedStore:
    """Any session store, with each of its coroutine methods timed and its failures counted.

    Generic on purpose: a method a store gains tomorrow is timed under its own name without
    a change here. Anything that is not a coroutine method passes through untouched.
    """

    def __init__(self, store: SessionStore, metrics: Metrics) -> None:
        self.inner = store
        self.name = store.name
        self._metrics = metrics

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.inner, name)
        if not inspect.iscoroutinefunction(attribute):
            return attribute
        timed = self._timed(name, attribute)
        setattr(self, name, timed)  # found in __dict__ next time, without __getattr__
        return timed

    def _timed(self, operation: str, method: Callable[..., Awaitable[Any]]) -> Any:
        metrics, store = self._metrics, self.name
        observe = metrics.store_latency.labels(operation, store).observe
        failed = metrics.store_failures.labels(operation, store).inc
        created = operation == "create"
        clock = time.perf_counter

        async def timed(*args: Any, **kwargs: Any) -> Any:
            start = clock()
            try:
                result = await method(*args, **kwargs)
            except StoreUnavailable:
                failed()
                raise
            finally:
                observe(clock() - start)
            if created:
                metrics.created.inc()
                if kwargs.get("replaces"):
                    metrics.session_destroyed("regenerate")
            return result

        return timed


def timed_store(store: SessionStore, metrics: Metrics | None) -> SessionStore:
    """*store* timed into *metrics*; the store itself when metrics are off."""
    return store if metrics is None else cast(SessionStore, TimedStore(store, metrics))


def unwrap(store: SessionStore) -> SessionStore:
    """The store behind a :class:`TimedStore` (for isinstance checks); others as they are."""
    return store.inner if isinstance(store, TimedStore) else store

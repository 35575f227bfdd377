"""Build the services, listen, and shut down gracefully.

The one place that does I/O at startup: reading the users file, connecting the store,
binding the socket. Everything it builds is handed to :func:`campus.web.app.make_app`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable

from tornado.ioloop import PeriodicCallback
from tornado.netutil import bind_sockets

from campus.accounts.follow import UsersFileFollower
from campus.accounts.signin import warm_up as warm_up_agents
from campus.accounts.users import UsersError
from campus.config import Config
from campus.http.connections import BoundedServer
from campus.observability.logs import configure as configure_logging
from campus.observability.logwriter import batched_logs
from campus.observability.metrics import Metrics, share_between_processes, unwrap
from campus.runtime.eventloop import EventLoopError, loop_factory, loop_name, run
from campus.runtime.sdnotify import notify
from campus.runtime.workers import supervise
from campus.session.store import SessionStore, StoreUnavailable
from campus.session.stores.memory import MemoryStore
from campus.session.stores.redis import RedisStore
from campus.session.stores.redis_durable import persistence_warning
from campus.web.app import make_app
from campus.web.services import Services, build_services, follow_users_file

log = logging.getLogger("campus")

#: How long in-flight requests get to finish after SIGTERM/SIGINT.
SHUTDOWN_GRACE = 10.0
SWEEP_INTERVAL_MS = 60_000


async def _check_store(store: SessionStore, timeout: float) -> None:
    """One warning line if the store does not answer now; it is retried on every request."""
    try:
        await asyncio.wait_for(store.ping(), timeout)
    except (StoreUnavailable, TimeoutError) as exc:
        log.warning(
            "the %s store does not answer (%s): serving anyway; session requests answer 503"
            " and /healthz says unavailable until it does",
            store.name,
            exc or "timed out",
        )
        return
    if isinstance(store, RedisStore):
        await _check_persistence(store, timeout)


async def _check_persistence(store: RedisStore, timeout: float) -> None:
    """One warning line when a crash of Redis could bring ended sessions back."""
    try:
        persistence = await asyncio.wait_for(store.persistence(), timeout)
    except (StoreUnavailable, TimeoutError):
        return  # it answered a moment ago; the next check is at the next start
    warning = persistence_warning(persistence)
    if warning is not None:
        log.warning("%s", warning)


def _sweeper(store: MemoryStore, metrics: Metrics | None) -> Callable[[], None]:
    def sweep() -> None:
        swept = store.sweep()
        if swept:
            log.debug("swept %d expired sessions", swept)
            if metrics is not None:
                metrics.session_destroyed("expiry", swept)

    return sweep


class StartupError(Exception):
    """A reason not to start at all; str() is one line."""


def check_startup(config: Config, services: Services) -> None:
    """What the configuration alone cannot tell: the files under the root.

    Production refuses to start without the built SPA; development starts and warns. (The
    users file's rules — production needs one, without the demo account — are the loading's,
    build_services: a version of the file loaded later must pass them too.)
    """
    shell = os.path.join(config.server.root, "dist", "index.html")
    if not os.path.isfile(shell):
        if config.production:
            raise StartupError(f"{shell} is missing: set --root or CAMPUS_ROOT to the checkout")
        log.warning("%s is missing: the SPA is not served (set --root or CAMPUS_ROOT)", shell)


def serve(config: Config) -> int:
    """Run until SIGTERM or SIGINT; 0 after a clean shutdown, 1 if startup failed."""
    configure_logging(config.log.format)
    workers = config.server.processes > 1
    if workers and config.metrics.enabled:
        # Before the metrics exist (build_services) and before the fork: every worker
        # writes its numbers where /metrics, in whichever worker answers, reads them all.
        share_between_processes()
    try:
        services = build_services(config)
        check_startup(config, services)
        factory = loop_factory(config.server.event_loop)
    except (UsersError, StartupError, EventLoopError) as exc:
        print(f"campus: {exc}", file=sys.stderr)
        return 1
    if workers:  # forked from here: see campus/runtime/workers.py
        warm_up_agents()  # once, before forking: every worker inherits the parser ready
        return supervise(
            config,
            # A worker that exited leaves its in-flight gauge behind: /metrics drops it.
            lambda sockets, ready: run(_serve_logged(services, sockets, ready), factory),
        )
    try:
        return run(_serve_logged(services), factory)
    except OSError as exc:  # e.g. the port is taken
        print(
            f"campus: cannot listen on {config.server.host}:{config.server.port}: {exc}",
            file=sys.stderr,
        )
        return 1


async def _serve_logged(
    services: Services,
    sockets: list[socket.socket] | None = None,
    ready: Callable[[], None] | None = None,
) -> int:
    # Log lines are batched while the loop runs; all of them are out before it ends.
    with batched_logs(asyncio.get_running_loop()):
        return await _serve(services, sockets, ready)


async def _serve(
    services: Services,
    sockets: list[socket.socket] | None = None,
    ready: Callable[[], None] | None = None,
) -> int:
    """Serve until SIGTERM/SIGINT. A worker (campus/runtime/workers.py) gets its sockets bound, and
    says *ready* to its parent where a lone process tells systemd."""
    config, store = services.config, unwrap(services.sessions.store)
    _warn_about(services)
    warm_up_agents()  # before listening: the parser's first use holds the GIL ~0.3-0.8 s
    users = follow_users_file(services)  # every process (each worker) follows the file
    users.start()
    server = BoundedServer(make_app(services), config.server, config.login.ipv6_prefix)
    if sockets is None:
        sockets = bind_sockets(config.server.port, config.server.host)
    port = sockets[0].getsockname()[1]  # before add_sockets, which re-wraps them
    server.add_sockets(sockets)
    timers = _start_timers(services, server)
    loop = asyncio.get_running_loop()
    log.info(
        "campus (%s, %s store, %s) listening on http://%s:%s",
        config.env,
        store.name,
        loop_name(loop),
        config.server.host,
        port,
    )
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await _check_store(store, config.redis.timeout)
    # Only now: systemd starts units ordered after us, and a proxy may route to us, once READY
    # (and a stop it sends from then on is a graceful one). The buffered log lines go first,
    # so that the journal holds "listening" once `systemctl start` has returned.
    for handler in logging.getLogger().handlers:
        handler.flush()
    notify("READY=1", f"STATUS=listening on {config.server.host}:{port}")  # no-op in workers
    if ready is not None:
        ready()
    await stop.wait()
    await _drain(server, timers, store, users)
    return 0


def _warn_about(services: Services) -> None:
    """What an operator should know before the server listens."""
    config, store = services.config, unwrap(services.sessions.store)
    if config.production and store.name == "memory":
        log.warning(
            "the memory store is per-process and forgets every session on restart: "
            'it is not for production (set store = "redis")'
        )
    if not len(services.users):
        log.warning("no users in %s: add one with `campus users add EMAIL`", config.users.file)
    if services.express is not None:
        log.info(
            "Express cut-over on: %s cookies carry their %s* sessions over",
            services.express.cookie_name,
            services.express.prefix,
        )


def _start_timers(services: Services, server: BoundedServer) -> list[PeriodicCallback]:
    """The memory store's sweep, and the in-flight gauge's copy for several processes."""
    timers = []
    store = unwrap(services.sessions.store)
    if isinstance(store, MemoryStore):
        timers.append(PeriodicCallback(_sweeper(store, services.metrics), SWEEP_INTERVAL_MS))
    if services.metrics is not None:
        copy_in_flight = services.metrics.track_in_flight(lambda: server.in_flight)
        if copy_in_flight is not None:
            timers.append(PeriodicCallback(copy_in_flight, 1000))
    for timer in timers:
        timer.start()
    return timers


async def _drain(
    server: BoundedServer,
    timers: list[PeriodicCallback],
    store: SessionStore,
    users: UsersFileFollower,
) -> None:
    """Stop accepting, let requests in flight finish (within the grace), close the store."""
    log.info("shutting down: no new connections, %d request(s) in flight", server.in_flight)
    notify("STOPPING=1", f"STATUS=draining {server.in_flight} request(s)")
    server.stop()
    for timer in timers:
        timer.stop()
    await users.stop()
    if not await server.drained(SHUTDOWN_GRACE):
        log.warning(
            "%d request(s) still running after %.0fs; closing", server.in_flight, SHUTDOWN_GRACE
        )
    await server.close_all_connections()
    await store.close()
    log.info("stopped")

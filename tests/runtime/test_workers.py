"""`[server] processes = 2`: two real worker processes on one port and the suite's Redis,
their parent supervising them (campus/runtime/workers.py). Which worker serves a connection is read
from the kernel: the process holding the server side of that TCP connection."""

from __future__ import annotations

import array
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.support.apps import PASSWORD
from tests.support.servers import (
    REPO,
    SECRET,
    Campus,
    RedisServer,
    campus_env,
    port_of,
    read_by_server,
    run_campus,
    tcp_table,
    wait_for,
)

ANN = {"email": "ann@campus.test", "password": PASSWORD}


def env(redis_server: RedisServer, users_file: Path, **extra: str) -> dict[str, str]:
    return campus_env(
        CAMPUS_ENV="production",
        CAMPUS_SESSION_SECRET=SECRET,
        CAMPUS_REDIS_URL=redis_server.url,
        CAMPUS_USERS_FILE=str(users_file),
        CAMPUS_SERVER_PROCESSES="2",
        **extra,
    )


def children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found |= {int(child) for child in (task / "children").read_text().split()}
        except OSError:
            continue
    return found


def socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").glob("*"):
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def listeners(pid: int, port: int) -> set[int]:
    """The parent's children with a listening socket on *port*."""
    inodes = {r[9] for r in tcp_table() if port_of(r[1]) == port and r[3] == "0A"}
    return {child for child in children(pid) if socket_inodes(child) & inodes}


def worker_of(connection: http.client.HTTPConnection, server: Campus) -> int:
    """The worker process at the other end of a client connection."""
    assert connection.sock is not None
    mine = connection.sock.getsockname()[1]
    inodes = {
        r[9]
        for r in tcp_table()
        if port_of(r[1]) == server.port and port_of(r[2]) == mine and r[3] == "01"
    }
    owners = [child for child in children(server.process.pid) if socket_inodes(child) & inodes]
    assert len(owners) == 1, owners
    return owners[0]


def both_listen(server: Campus) -> set[int]:
    wait_for(lambda: len(listeners(server.process.pid, server.port)) == 2, "2 workers listening")
    return listeners(server.process.pid, server.port)


@pytest.fixture
def workers(redis_server: RedisServer, redis_db: redis.Redis, users_file: Path) -> Iterator[Campus]:
    server = Campus(env(redis_server, users_file))
    both_listen(server)
    yield server
    server.stop()


def connections_by_worker(server: Campus, count: int = 24) -> dict[int, http.client.HTTPConnection]:
    """Keep-alive connections until each worker has one (the kernel hashes them: 2^-23 odds
    that 24 all land on one worker)."""
    found: dict[int, http.client.HTTPConnection] = {}
    for _ in range(count):
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        connection.request("GET", "/healthz")
        assert connection.getresponse().read()
        pid = worker_of(connection, server)
        if pid in found:
            connection.close()
        else:
            found[pid] = connection
    return found


def call(
    connection: http.client.HTTPConnection,
    method: str,
    path: str,
    cookie: str = "",
    body: Any = None,
) -> tuple[int, str, Any]:
    headers = {"Cookie": f"campus.sid={cookie}"} if cookie else {}
    payload = None if body is None else json.dumps(body)
    if payload is not None:
        headers["Content-Type"] = "application/json"
    connection.request(method, path, body=payload, headers=headers)
    response = connection.getresponse()
    raw = response.read()
    set_cookie = response.getheader("Set-Cookie") or ""
    value = set_cookie.split(";", 1)[0].removeprefix("campus.sid=").strip('"')
    return response.status, value, json.loads(raw)


def test_both_workers_serve_and_a_session_from_one_is_valid_on_the_other(
    workers: Campus,
) -> None:
    by_worker = connections_by_worker(workers)
    assert set(by_worker) == listeners(workers.process.pid, workers.port)
    first, second = by_worker.values()
    status, cookie, body = call(first, "POST", "/login", body=ANN)
    assert status == 200 and cookie
    assert call(second, "GET", "/api/me", cookie) == (200, "", body)
    assert call(second, "POST", "/logout", cookie)[0] == 200
    assert call(first, "GET", "/api/me", cookie)[0] == 401  # logged out on both
    for connection in by_worker.values():
        connection.close()
    assert "Traceback" not in workers.stop()


def test_sigterm_drains_every_worker_then_the_parent_exits_zero(workers: Campus) -> None:
    body = json.dumps(ANN).encode()
    head = (
        f"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
        "Content-Type: application/json\r\n\r\n"
    ).encode()
    pids = listeners(workers.process.pid, workers.port)
    in_flight = []
    for pid, connection in connections_by_worker(workers).items():
        assert connection.sock is not None
        connection.sock.sendall(head + body[:10])  # a request in flight on each worker
        in_flight.append((pid, connection.sock))
    for _, sock in in_flight:
        wait_for(partial(read_by_server, sock), "the workers to read the requests")
    workers.process.send_signal(signal.SIGTERM)
    draining = "shutting down: no new connections, 1 request(s) in flight"
    wait_for(lambda: workers.log().count(draining) == 2, "both workers draining", 10)
    assert workers.process.poll() is None  # draining
    assert children(workers.process.pid) == pids
    for _, sock in in_flight:
        sock.sendall(body[10:])
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK")
    assert workers.process.wait(15) == 0
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", workers.port), timeout=1).close()
    log = workers.stop()
    assert log.count("stopped") == 3 and "Traceback" not in log  # two workers, the parent


def test_a_killed_worker_is_replaced_and_the_port_keeps_serving(workers: Campus) -> None:
    before = listeners(workers.process.pid, workers.port)
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    wait_for(
        lambda: len(listeners(workers.process.pid, workers.port) - {victim}) == 2,
        "a new worker listening",
    )
    for _ in range(10):  # whichever worker the kernel picks answers
        assert workers.request("/healthz")[0] == 200
    log = workers.stop()
    assert workers.process.returncode == 0
    assert f"worker {victim} killed by signal 9: starting another" in log


def test_workers_that_keep_dying_stop_the_parent_with_status_1(workers: Campus) -> None:
    """Past 5 deaths in a minute the parent gives up: systemd's Restart= takes over."""
    for _ in range(6):
        alive = listeners(workers.process.pid, workers.port)
        os.kill(min(alive), signal.SIGKILL)
        wait_for(
            lambda alive=alive: (  # type: ignore[misc]
                workers.process.poll() is not None
                or len(listeners(workers.process.pid, workers.port) - alive) == 1
            ),
            "a replacement, or the parent's exit",
        )
    assert workers.process.wait(20) == 1
    assert "6 deaths in 60 s, stopping" in workers.stop()


def test_workers_leave_when_their_parent_is_killed(workers: Campus) -> None:
    pids = listeners(workers.process.pid, workers.port)
    workers.process.kill()
    workers.process.wait(5)
    wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in pids), "workers gone")


def test_ready_is_sent_by_the_parent_once_every_worker_listens(
    tmp_path: Path, redis_server: RedisServer, redis_db: redis.Redis, users_file: Path
) -> None:
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:
        systemd.bind(path)
        systemd.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        systemd.settimeout(20)
        server = Campus(env(redis_server, users_file, NOTIFY_SOCKET=path))
        try:
            lines, sender = receive(systemd)
            assert lines[0] == "READY=1" and sender == server.process.pid
            # The very moment READY=1 arrives, both workers already take connections.
            assert len(listeners(server.process.pid, server.port)) == 2
            assert f"STATUS=2 workers listening on port {server.port}" in lines
            server.process.send_signal(signal.SIGTERM)
            lines, sender = receive(systemd)
            assert lines[0] == "STOPPING=1" and sender == server.process.pid
            assert server.process.wait(15) == 0
            systemd.settimeout(0.3)
            with pytest.raises(TimeoutError):  # nothing from the workers, ever
                systemd.recv(4096)
        finally:
            server.stop()


def receive(sock: socket.socket) -> tuple[list[str], int]:
    """One notification and the pid that sent it (SCM_CREDENTIALS, as systemd reads it)."""
    size = array.array("i", [0, 0, 0]).itemsize * 3
    data, ancillary, _, _ = sock.recvmsg(4096, socket.CMSG_SPACE(size))
    pid = 0
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            pid = array.array("i", payload[:size])[0]
    return data.decode().split("\n"), pid


def test_a_port_already_taken_is_one_line_and_status_1(
    redis_server: RedisServer, users_file: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_campus(env(redis_server, users_file), "--port", str(port))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith(f"campus: cannot listen on 127.0.0.1:{port}"), result.stderr
    assert "Traceback" not in result.stderr


def test_any_free_port_is_the_same_port_for_every_worker(
    redis_server: RedisServer, redis_db: redis.Redis, users_file: Path
) -> None:
    """--port 0: the parent picks a free port, and both workers listen on that one."""
    process = subprocess.Popen(
        [sys.executable, "-m", "campus", "--port", "0"],
        cwd=REPO,
        env=env(redis_server, users_file),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        for line in process.stderr:
            if "worker processes serving port" in line:
                port = int(line.rsplit(" ", 1)[1])
                break
        assert len(listeners(process.pid, port)) == 2
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0
    finally:
        process.kill()
        process.wait()

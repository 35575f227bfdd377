"""Connection bounds on a real server process: how many connections, and how long each.

Slow clients are cut after their timeout, connections past the cap (or past what the
open-files limit allows) get a 503 at once, running out of descriptors neither spins nor
floods the log, and the server answers again as soon as a connection frees up. The timing
asserts are loose (this machine is shared); bench/slowclients.py measures the real thing.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import resource
import select
import socket
import time
import tomllib
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from campus.http.connections import FD_RESERVE
from campus.observability.logwriter import BURST
from tests.support.rawhttp import Response, build, exchange, read_response
from tests.support.servers import REPO, Campus, campus_env, read_by_server, wait_for
from tests.support.units import service_section

CPU_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User and system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CPU_TICK


def open_descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def lines_of(campus: Campus) -> list[str]:
    return campus.log().splitlines()


def healthz(campus: Campus) -> Response:
    try:
        return exchange(campus.port, build("GET", "/healthz"), timeout=3)
    except OSError:
        return Response(b"")


@contextlib.contextmanager
def running(env: dict[str, str], *, nofile: int | None = None) -> Iterator[Campus]:
    campus = Campus(env, nofile=nofile)
    try:
        yield campus
    finally:
        log = campus.stop()
        assert campus.process.returncode == 0, log
        assert "Traceback" not in log, log


def connections(port: int, count: int) -> list[socket.socket]:
    return [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(count)]


#: Headers of a request whose body never comes: a busy connection, never closed to make room.
SLOW_BODY = b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n"


def answered(sock: socket.socket) -> bool:
    return bool(select.select([sock], [], [], 0)[0])


def decided(socks: list[socket.socket]) -> bool:
    """Whether the server refused each (a 503 at once) or took it (its headers read)."""
    return all(answered(sock) or read_by_server(sock) for sock in socks)


def hold(port: int, count: int) -> list[socket.socket]:
    """*count* busy connections the server has accepted and keeps."""
    held: list[socket.socket] = []
    while len(held) < count:
        more = connections(port, count - len(held))
        for sock in more:
            sock.sendall(SLOW_BODY)
        held += more
        wait_for(partial(decided, more), "the server to take or refuse each connection", 10)
        for sock in [sock for sock in held if answered(sock)]:
            held.remove(sock)
            sock.close()
    return held


def closed_after(sock: socket.socket, trickle: bytes = b"", limit: float = 8.0) -> float:
    """Seconds until the server closes *sock*, sending *trickle* every 0.2 s meanwhile."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        readable, _, _ = select.select([sock], [], [], 0.2)
        if readable:
            try:
                if not sock.recv(65536):
                    return time.monotonic() - started
            except ConnectionResetError:
                return time.monotonic() - started
        elif trickle:
            try:
                sock.sendall(trickle)
            except (BrokenPipeError, ConnectionResetError):
                return time.monotonic() - started
    return float("inf")


# --- descriptors and the connection cap ----------------------------------------------------


def test_past_max_connections_a_new_one_gets_a_503_until_a_slot_frees() -> None:
    with running(campus_env(CAMPUS_SERVER_MAX_CONNECTIONS="5")) as campus:
        held = hold(campus.port, 5)  # while the startup check's connection may still be open
        time.sleep(1.2)  # long enough to be closed to make room, if they were idle
        wait_for(lambda: healthz(campus).status == 503, "no 503 past the cap", 10)
        busy = healthz(campus)
        assert json.loads(busy.body) == {"errorMessage": "Server busy"}
        assert busy.headers["connection"] == "close"
        assert busy.headers["retry-after"] == "1"
        assert busy.headers["content-type"].startswith("application/json")
        assert re.fullmatch(r"[0-9a-f]{16}", busy.headers["x-request-id"])  # like every answer
        for _ in range(20):
            assert healthz(campus).status == 503
        held.pop().close()
        wait_for(lambda: healthz(campus).status == 200, "no slot after one closed", 10)
        for sock in held:
            sock.close()

        def refusals() -> list[str]:
            return [line for line in lines_of(campus) if "refusing connections" in line]

        wait_for(lambda: bool(refusals()), "the refusals line", 10)  # log lines leave in batches
        time.sleep(0.2)
        assert len(refusals()) <= BURST, refusals()  # 21 refusals: the rest summed up later


def test_one_client_cannot_hold_every_slot() -> None:
    """Busy connections are never closed to make room: without a share per client, one
    address sending bodies slowly would hold every slot and everyone else get the 503."""
    env = campus_env(
        CAMPUS_SERVER_MAX_CONNECTIONS="20", CAMPUS_SERVER_MAX_CONNECTIONS_PER_CLIENT="5"
    )
    with running(env) as campus:
        held = hold(campus.port, 5)
        time.sleep(1.2)  # they would be closed to make room, were they idle
        mine = exchange(campus.port, build("GET", "/healthz"))
        assert mine.status == 503
        assert json.loads(mine.body) == {"errorMessage": "Too many connections from this address"}
        assert mine.headers["connection"] == "close" and mine.headers["retry-after"] == "1"
        assert exchange(campus.port, build("GET", "/healthz"), source="127.0.0.2").status == 200
        held.pop().close()
        wait_for(lambda: healthz(campus).status == 200, "the client's slot came back", 10)
        for sock in held:
            sock.close()


def test_behind_a_trusted_proxy_its_connections_are_not_limited_per_client() -> None:
    env = campus_env(CAMPUS_SERVER_MAX_CONNECTIONS_PER_CLIENT="5", CAMPUS_SERVER_TRUST_PROXY="true")
    with running(env) as campus:
        held = hold(campus.port, 8)  # the proxy is the only peer: it bounds its own clients
        assert healthz(campus).status == 200
        for sock in held:
            sock.close()


def test_a_request_tornado_cannot_parse_gets_a_json_400(quick: Campus) -> None:
    for request in (
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/2.0\r\nHost: x\r\n\r\n",
        b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        "POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: \u00b2\r\n\r\n".encode("latin-1"),
        b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
    ):
        response = exchange(quick.port, request)
        assert response.status == 400, request
        assert json.loads(response.body) == {"errorMessage": "Malformed request"}
        assert response.headers["connection"] == "close"
        assert re.fullmatch(r"[0-9a-f]{16}", response.headers["x-request-id"])


def test_a_target_in_absolute_form_is_the_path_it_names(quick: Campus) -> None:
    """A server must accept ``GET http://host/path`` (RFC 9112, 3.2.2)."""
    target = f"http://127.0.0.1:{quick.port}/healthz"
    response = exchange(quick.port, build("GET", target))
    assert response.status == 200 and json.loads(response.body)["status"] == "ok"
    assert (
        exchange(quick.port, build("GET", f"http://127.0.0.1:{quick.port}/api/nope")).status == 404
    )


def test_a_content_length_too_long_to_convert_is_a_413_not_an_exception(quick: Campus) -> None:
    digits = "1" * 4301  # int() refuses more than 4,300 digits
    request = f"POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: {digits}\r\n\r\n"
    response = exchange(quick.port, request.encode())
    assert response.status == 413
    assert json.loads(response.body) == {"errorMessage": "Request body too large"}
    small = "0" * 40 + "2"  # leading zeros: a legal spelling of a small length
    request = f"POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: {small}\r\n\r\n{{}}"
    assert exchange(quick.port, request.encode()).status == 400  # the body's own 400
    assert "Traceback" not in "".join(lines_of(quick))


def test_at_the_cap_the_longest_idle_connection_makes_room() -> None:
    with running(campus_env(CAMPUS_SERVER_MAX_CONNECTIONS="3")) as campus:
        busy = hold(campus.port, 1)
        (idle,) = connections(campus.port, 1)
        time.sleep(0.3)
        (kept_alive,) = connections(campus.port, 1)  # one request answered, then idle
        kept_alive.sendall(build("GET", "/healthz", close=False))
        assert read_response(kept_alive).status == 200
        time.sleep(1.2)

        (newcomer,) = connections(campus.port, 1)
        assert closed_after(idle, limit=1) < 1  # it waited longest
        time.sleep(1.2)
        assert healthz(campus).status == 200
        assert closed_after(kept_alive, limit=1) < 1  # next longest
        assert not select.select([newcomer, *busy], [], [], 0)[0]  # the others stay

        newcomer.sendall(SLOW_BODY)
        wait_for(lambda: read_by_server(newcomer), "the newcomer's request read: busy from now on")
        busy += [newcomer, *hold(campus.port, 1)]
        time.sleep(1.2)
        assert healthz(campus).status == 503  # all busy: nobody to close
        assert not select.select(busy, [], [], 0)[0]
        for sock in busy:
            sock.close()

        def closing() -> list[str]:
            return [line for line in lines_of(campus) if "closing idle ones" in line]

        wait_for(lambda: bool(closing()), "the closing line", 10)  # log lines leave in batches
        time.sleep(0.2)
        assert len(closing()) <= BURST, closing()


def test_the_cap_stays_below_the_open_files_limit() -> None:
    """``ulimit -n 128``: the server takes what the limit allows and refuses the rest."""
    with running(campus_env(), nofile=128) as campus:
        lowered = "max_connections 4096 lowered to 96"
        # Log lines leave in batches (within 50 ms): wait for it rather than race it.
        wait_for(lambda: any(lowered in line for line in lines_of(campus)), lowered, 10)
        before = cpu_seconds(campus.process.pid)
        held: list[socket.socket] = []
        for count in (200, 20):  # more than the limit, all busy; then into any slot left
            # by a connection still closing meanwhile (the startup check's, say)
            held += connections(campus.port, count)
            for sock in held[-count:]:
                with contextlib.suppress(OSError):  # refused ones may be closed already
                    sock.sendall(SLOW_BODY)
            time.sleep(0.3)
        seen: list[int | None] = []

        def refused() -> bool:
            seen.append(healthz(campus).status)
            return seen[-1] == 503

        wait_for(refused, seen, 10)  # on failure: the answers seen
        time.sleep(1)
        assert cpu_seconds(campus.process.pid) - before < 1.0  # no spinning
        assert open_descriptors(campus.process.pid) < 128
        for sock in held:
            sock.close()
        wait_for(lambda: healthz(campus).status == 200, "/healthz to answer again", 10)
        log = lines_of(campus)
        # "lowered" and "listening"; then refusals, perhaps accept() failing too: each at most
        # BURST lines and a summary, however many connections it was.
        assert len([line for line in log if "campus.access" not in line]) <= 2 + 2 * (BURST + 1)


def test_out_of_descriptors_the_server_waits_instead_of_spinning() -> None:
    """The limit lowered under a running server, so that accept() itself fails (EMFILE)."""
    with running(campus_env()) as campus:
        pid = campus.process.pid
        spare = 10
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (open_descriptors(pid) + spare,) * 2)
        lines_before = len(lines_of(campus))
        held = connections(campus.port, 4 * spare)  # the kernel queues what is not accepted

        def accept_failed() -> bool:
            return any("cannot accept connections" in line for line in lines_of(campus))

        wait_for(accept_failed, "accept() to fail", 10)
        before = cpu_seconds(pid)
        time.sleep(2)
        assert cpu_seconds(pid) - before < 0.5  # unbounded, it spins: a core for 2 s
        new_lines = lines_of(campus)[lines_before:]
        assert len(new_lines) <= BURST + 1, new_lines[:10]  # not a traceback per attempt
        assert any("cannot accept connections" in line for line in new_lines), new_lines
        for sock in held:
            sock.close()
        wait_for(lambda: healthz(campus).status == 200, "did not come back", 10)


# --- timeouts -----------------------------------------------------------------------------

TIMEOUTS = {
    "CAMPUS_SERVER_HEADER_TIMEOUT": "1",
    "CAMPUS_SERVER_IDLE_TIMEOUT": "3",
    "CAMPUS_SERVER_BODY_TIMEOUT": "1",
}


def test_a_body_declared_over_the_servers_limit_gets_a_json_413(quick: Campus) -> None:
    """Tornado alone would answer a bare 400 with no body (its limit is 1 MiB)."""
    for path in ("/login", "/api/me", "/logout", "/nothing.js"):
        request = build("POST", path, [("Content-Length", str(2 * 1024 * 1024))], close=False)
        response = exchange(quick.port, request)
        assert response.status == 413, path
        assert json.loads(response.body) == {"errorMessage": "Request body too large"}
        assert response.headers["connection"] == "close"


@pytest.fixture(scope="module")
def quick() -> Iterator[Campus]:
    """A server with short timeouts: 1 s for headers and bodies, 3 s idle."""
    with running(campus_env(**TIMEOUTS)) as campus:
        yield campus


def test_a_client_slow_to_send_its_headers_is_cut_after_header_timeout(quick: Campus) -> None:
    with socket.create_connection(("127.0.0.1", quick.port)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        assert 0.8 < closed_after(sock, trickle=b"X-Slow: still coming\r\n") < 4


def test_a_connection_that_never_sends_is_cut_after_header_timeout(quick: Campus) -> None:
    with socket.create_connection(("127.0.0.1", quick.port)) as sock:
        assert 0.8 < closed_after(sock) < 4


def test_a_kept_alive_connection_idles_for_idle_timeout(quick: Campus) -> None:
    request = build("GET", "/healthz", close=False)
    with socket.create_connection(("127.0.0.1", quick.port), timeout=5) as sock:
        sock.sendall(request)
        assert read_response(sock).status == 200
        time.sleep(1.8)  # past the header timeout, within the idle one
        sock.sendall(request)
        assert read_response(sock).status == 200
        assert 2.5 < closed_after(sock) < 6


def test_a_client_slow_to_send_its_body_is_cut_after_body_timeout(quick: Campus) -> None:
    with socket.create_connection(("127.0.0.1", quick.port)) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n")
        assert 0.8 < closed_after(sock, trickle=b"x") < 4


def test_a_client_that_does_not_read_its_responses_is_cut(quick: Campus) -> None:
    """Slow read: pipelined requests whose answers fill every buffer on the way."""
    pid = quick.process.pid
    idle = open_descriptors(pid)
    size = len((REPO / "dist/js/views.js").read_bytes())
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    with sock:
        sock.connect(("127.0.0.1", quick.port))
        wait_for(lambda: open_descriptors(pid) > idle, "the connection's descriptor", 10)
        # Far more than the socket buffers hold; and then reading nothing.
        sock.sendall(build("GET", "/js/views.js", close=False) * (16 * 1024 * 1024 // size))
        wait_for(lambda: open_descriptors(pid) == idle, "never cut", 15)


# --- what answers look like -----------------------------------------------------------------


def test_headers_over_the_limit_get_a_json_431(quick: Campus) -> None:
    response = exchange(quick.port, build("GET", "/healthz", [("X-Big", "a" * 40_000)]))
    assert response.status == 431
    assert json.loads(response.body) == {"errorMessage": "Request headers too large"}
    assert response.headers["connection"] == "close"
    assert "server" not in response.headers
    assert re.fullmatch(r"[0-9a-f]{16}", response.headers["x-request-id"])
    theirs = [("X-Request-ID", "ticket-42"), ("X-Big", "a" * 40_000)]
    assert exchange(quick.port, build("GET", "/", theirs)).headers["x-request-id"] == "ticket-42"
    assert exchange(quick.port, build("GET", "/healthz", [("X-Big", "a" * 30_000)])).status == 200
    # Past Tornado's own limit (64 KiB) the connection is closed without an answer.
    assert exchange(quick.port, build("GET", "/healthz", [("X-Big", "a" * 70_000)])).raw == b""


@pytest.fixture(scope="module")
def strict(users_file: Path) -> Iterator[Campus]:
    """A server that throttles this client's address: one failed login is the limit."""
    env = campus_env(CAMPUS_USERS_FILE=str(users_file), CAMPUS_LOGIN_MAX_FAILURES="1")
    with running(env) as campus:
        request = build("POST", "/login", body=b'{"email": "a@b.test", "password": "x"}')
        assert exchange(campus.port, request).status == 403
        yield campus


def login(headers: list[tuple[str, str]] = [], body: bytes | None = None) -> bytes:  # noqa: B006
    """A keep-alive POST /login; a wrong password unless *body* says otherwise."""
    if body is None:
        body = json.dumps({"email": "ann@campus.test", "password": "wrong"}).encode()
    return build(
        "POST", "/login", [("Content-Type", "application/json"), *headers], body, close=False
    )


REFUSALS: dict[str, tuple[bytes, int]] = {
    # Refused before the body is read: the connection cannot be reused, and must say so.
    "403 cross-origin": (login([("Origin", "http://evil.test")]), 403),
    "413 declared": (
        b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 70000\r\n\r\n",
        413,
    ),
    # Refused once the body is read (today): it may stay open, and then must work.
    "429": (login(), 429),
    "400": (login(body=b"{"), 400),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_a_refusal_never_leaves_a_kept_alive_connection_dead(strict: Campus, case: str) -> None:
    request, status = REFUSALS[case]
    with socket.create_connection(("127.0.0.1", strict.port), timeout=5) as sock:
        sock.sendall(request)
        response = read_response(sock)
        assert response.status == status, response.raw
        if response.headers.get("connection") == "close":
            assert closed_after(sock) < 3  # said and done
        else:
            sock.sendall(build("GET", "/healthz", close=False))
            assert read_response(sock).status == 200  # still usable


def test_no_response_names_the_server_software(strict: Campus) -> None:
    port = strict.port
    shell = exchange(port, build("GET", "/"))
    requests = [
        build("GET", "/healthz"),
        build("GET", "/login"),
        build("GET", "/js/main.js"),
        build("GET", "/favicon.svg"),
        build("HEAD", "/"),
        build("GET", "/", [("If-None-Match", shell.headers["etag"])]),  # 304
        build("GET", "/api/me"),  # 401
        build("GET", "/missing.js"),  # 404
        build("GET", "/api/nothing"),  # 404
        build("PUT", "/", body=b""),  # 405
        build("POST", "/logout", [("Origin", "http://evil.test")], b""),  # 403
        build("GET", "/logout"),
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nno colon here\r\n\r\n",  # Tornado's own 400
    ]
    statuses = set()
    for request in [build("GET", "/"), *requests]:
        response = exchange(port, request)
        assert response.status is not None, request
        statuses.add(response.status)
        assert "server" not in response.headers, (request, response.headers)
    assert statuses == {200, 304, 400, 401, 403, 404, 405}


def test_a_store_outage_answer_names_no_server_software(tmp_path: Path) -> None:
    with socket.socket() as unused:  # a port nobody listens on: Redis is down
        unused.bind(("127.0.0.1", 0))
        url = f"redis://127.0.0.1:{unused.getsockname()[1]}/0"
        env = campus_env(CAMPUS_STORE="redis", CAMPUS_REDIS_URL=url, CAMPUS_REDIS_TIMEOUT="0.2")
        with running(env) as campus:
            response = exchange(campus.port, build("GET", "/healthz"))
            assert response.status == 503
            assert "server" not in response.headers


@pytest.mark.parametrize("unit", ["campus.service", "campus@.service"])
def test_the_units_allow_enough_open_files_for_max_connections(unit: str) -> None:
    """The shipped limit leaves the shipped max_connections whole (tenth kept in reserve)."""
    service = service_section(unit)
    limit = int(service["LimitNOFILE"])
    with (REPO / "config" / "production.toml").open("rb") as file:
        wanted = tomllib.load(file)["server"]["max_connections"]
    assert limit - max(FD_RESERVE, limit // 10) >= wanted


def test_nothing_pipelined_behind_a_closing_answer_runs(strict: Campus) -> None:
    """Tornado would still run requests it had buffered on a connection it closed: a client
    told ``Connection: close`` would retry them, and they would run twice."""

    def pipelined() -> int:
        return sum('"GET /healthz/pipelined"' in line for line in lines_of(strict))

    refused = build("POST", "/login", [("Origin", "http://evil.test")], b"{}", close=False)
    behind = build("GET", "/healthz/pipelined", close=False)
    with socket.create_connection(("127.0.0.1", strict.port), timeout=5) as sock:
        sock.sendall(refused + behind)
        response = read_response(sock)
        assert (response.status, response.headers["connection"]) == (403, "close")
        assert closed_after(sock) < 3
    exchange(strict.port, build("GET", "/healthz/pipelined"))  # one that does run
    wait_for(lambda: pipelined() >= 1, "a pipelined request's access line", 10)
    time.sleep(0.3)
    assert pipelined() == 1

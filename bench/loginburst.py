"""A burst of abandoned logins against a real campus: does a real user still sign in?

Issue 20's attack, rerun: ``--burst`` (400) ``POST /login``, each a different unknown email from
a loopback address of its own (127.0.0.2, 127.0.0.3, ...: every 127.x address is loopback), each
socket closed 50 ms after sending, all within about 2 s. One second into the burst a real user
(the demo account, from 127.0.0.1) signs in, retrying on 503/429 after ``Retry-After`` as the
SPA's user would; meanwhile a signed-in client asks ``GET /api/me`` every 20 ms. Reported per
campus checkout (``--root``, repeatable, e.g. this one and an export of main, in one run):

- ``login_s``: the real login's delay from sending to its 200, and ``after_burst_s``: from the
  end of the burst (wanted: under 3 s);
- ``cpu_after_burst_s``: CPU the server spent after the burst ended (hashing for clients that
  were gone), and ``busy_for_s``: how long until it was idle again (under 5% of a core);
- ``me_p50_ms`` / ``me_p99_ms``: /api/me latency during the burst and the login;
- ``rss_mb``: the server's memory before and at its largest.

    python3 bench/loginburst.py                              # this checkout
    git archive main | tar -x -C /tmp/campus-main            # main, for comparison
    python3 bench/loginburst.py --root . --root /tmp/campus-main --json bench/loginburst.json

campus runs in development (memory store, the demo users file, default Argon2 cost), one
process, access log off. Everything stays on loopback.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import threading
import time
from pathlib import Path
from typing import Any

from harness import free_port, start_campus, stop

REPO = Path(__file__).resolve().parent.parent
DEMO = {"email": "demo@campus.test", "password": "campus-demo"}
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def request(
    port: int, method: str, path: str, body: dict[str, str] | None = None, cookie: str = ""
) -> tuple[int, http.client.HTTPMessage, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if cookie:
        headers["Cookie"] = cookie
    conn.request(method, path, json.dumps(body) if body is not None else None, headers)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, response.headers, data


def session_of(headers: http.client.HTTPMessage) -> str:
    """The session cookie (``campus.sid=...``) among the Set-Cookie headers."""
    cookies = [c.split(";", 1)[0] for c in headers.get_all("Set-Cookie") or []]
    return next(c for c in cookies if c.startswith("campus.sid="))


def address(i: int) -> str:
    return f"127.0.{1 + i // 250}.{2 + i % 250}"


def burst(port: int, count: int, seconds: float, close_after: float) -> None:
    """*count* logins, each from its own address, each abandoned *close_after* after sending."""
    pending: list[tuple[float, socket.socket]] = []
    start = time.monotonic()
    for i in range(count):
        body = json.dumps({"email": f"nobody{i}@example.org", "password": "guess"}).encode()
        head = f"POST /login HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        sock = socket.socket()
        sock.bind((address(i), 0))
        sock.connect(("127.0.0.1", port))
        sock.sendall(head.encode() + body)
        pending.append((time.monotonic() + close_after, sock))
        while pending and pending[0][0] <= time.monotonic():
            pending.pop(0)[1].close()
        delay = start + (i + 1) * seconds / count - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    for due, sock in pending:
        time.sleep(max(0.0, due - time.monotonic()))
        sock.close()


def run(root: Path, args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    server = start_campus(root, port, CAMPUS_LOG_ACCESS="false")
    try:
        status, headers, _ = request(port, "POST", "/login", DEMO)
        assert status == 200, status
        cookie = session_of(headers)
        time.sleep(1)
        rss_before, peak = rss_mb(server.pid), rss_mb(server.pid)
        done = threading.Event()
        me: list[float] = []
        login: dict[str, Any] = {}

        def probe() -> None:
            while not done.is_set():
                sent = time.monotonic()
                status = request(port, "GET", "/api/me", cookie=cookie)[0]
                assert status == 200, status  # signed in: the session is read each time
                me.append(time.monotonic() - sent)
                time.sleep(max(0.0, 0.02 - (time.monotonic() - sent)))

        def real_user() -> None:
            time.sleep(1.0)  # one second into the burst
            sent, tries, answers = time.monotonic(), 0, []
            while True:
                tries += 1
                status, headers, _ = request(port, "POST", "/login", DEMO)
                answers.append(status)
                if status == 200:
                    break
                time.sleep(float(headers.get("Retry-After", "1")))
            login.update(sent=sent, done=time.monotonic(), tries=tries, answers=answers)

        prober = threading.Thread(target=probe)
        user = threading.Thread(target=real_user)
        started = time.monotonic()
        prober.start()
        user.start()
        burst(port, args.burst, args.seconds, args.close_after)
        ended, cpu_at_end = time.monotonic(), cpu_seconds(server.pid)
        user.join()  # the probe runs during the burst and until the real user is in
        done.set()
        prober.join()
        idle_at, last = time.monotonic(), cpu_seconds(server.pid)
        while time.monotonic() - ended < args.wait:  # until the server is idle
            time.sleep(1)
            peak = max(peak, rss_mb(server.pid))
            now = cpu_seconds(server.pid)
            if now - last < 0.05:
                break
            last, idle_at = now, time.monotonic()
        cpu_after = cpu_seconds(server.pid) - cpu_at_end
        latencies = sorted(me)
        return {
            "root": str(root),
            "burst": args.burst,
            "burst_s": round(ended - started, 2),
            "login_s": round(login["done"] - login["sent"], 2),
            "after_burst_s": round(max(0.0, login["done"] - ended), 2),
            "login_tries": login["tries"],
            "login_answers": sorted(set(login["answers"])),
            "cpu_after_burst_s": round(cpu_after, 2),
            "busy_for_s": round(idle_at - ended, 1),
            "me_requests": len(latencies),
            "me_p50_ms": round(1000 * statistics.median(latencies), 1),
            "me_p99_ms": round(1000 * latencies[int(0.99 * (len(latencies) - 1))], 1),
            "rss_mb": [round(rss_before), round(peak)],
        }
    finally:
        stop(server)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--root", action="append", type=Path, help="a campus checkout")
    parser.add_argument("--burst", type=int, default=400)
    parser.add_argument("--seconds", type=float, default=1.9, help="to send the burst in")
    parser.add_argument("--close-after", type=float, default=0.05)
    parser.add_argument("--wait", type=float, default=240, help="most seconds to wait for idle")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = [run(root.resolve(), args) for root in args.root or [REPO]]
    for result in results:
        print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()

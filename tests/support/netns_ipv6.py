"""Many addresses of one IPv6 /64 against a campus process, inside a network namespace.

Run as ``unshare --net --map-root-user -- python -m tests.support.netns_ipv6 PREFIX`` (the
test in tests/http/test_ipv6_prefix.py does): the namespace is this process's own, so the route
it adds (``local fd00:1::/64 dev lo``) and every connection stay in it; the machine's own
interfaces are never touched. Clients bind any address of the prefix with IP_FREEBIND.

Prints one JSON object: the answers to 30 logins spread over 6 addresses, and how many of 300
connections from 300 addresses were accepted at once, with ``[login] ipv6_prefix = PREFIX``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NETWORK = "fd00:1::"
SERVER = "fd00:1::1"
IP_FREEBIND = 15  # linux/in.h; socket.IP_FREEBIND exists from Python 3.12 only


def client(address: str, port: int) -> socket.socket:
    """A connection to the server from *address*, any address of the prefix."""
    sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_IP, IP_FREEBIND, 1)
    sock.bind((address, 0))
    sock.settimeout(10)
    sock.connect((SERVER, port))
    return sock


def answer(sock: socket.socket) -> int:
    """The status of the one answer on *sock*, read until the server closes or it is whole."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else 0


def login(address: str, port: int, email: str) -> int:
    body = json.dumps({"email": email, "password": "a wrong password"}).encode()
    head = f"POST /login HTTP/1.1\r\nHost: [{SERVER}]:{port}\r\nConnection: close\r\n"
    head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    with client(address, port) as sock:
        sock.sendall(head.encode() + body)
        return answer(sock)


def connections(port: int, count: int) -> dict[str, int]:
    """Open *count* connections from as many addresses, send nothing, and see which the
    server refused (a 503 and a close) while all the others were still open."""
    socks = [client(f"{NETWORK}2:{i:x}", port) for i in range(count)]
    time.sleep(1.0)
    refused = 0
    for sock in socks:
        sock.setblocking(False)
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            continue  # still open, nothing said: accepted
        refused += data.startswith(b"HTTP/1.1 503") or not data
    for sock in socks:
        sock.close()
    return {"opened": count, "refused": refused, "accepted": count - refused}


def wait_for(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read().decode(errors="replace") if process.stdout else ""
            raise SystemExit(f"campus exited: {output}")
        try:
            with socket.create_connection(("::1", port), timeout=1) as sock:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if answer(sock) == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("campus did not answer /healthz")


def main(prefix: int) -> None:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    subprocess.run(["ip", "-6", "route", "add", "local", f"{NETWORK}/64", "dev", "lo"], check=True)
    port = 8000
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPUS_")}
    env.update(
        CAMPUS_SERVER_HOST="::", CAMPUS_LOGIN_IPV6_PREFIX=str(prefix), CAMPUS_LOG_ACCESS="false"
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "campus", "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(port, process)
        codes = Counter(
            login(f"{NETWORK}1:{i % 6 + 1}", port, f"guess{i}@campus.test") for i in range(30)
        )
        result = {
            "ipv6_prefix": prefix,
            "logins": {str(code): n for code, n in sorted(codes.items())},
            "connections": connections(port, 300),
        }
    finally:
        process.terminate()
        process.wait(10)
    print(json.dumps(result))


if __name__ == "__main__":
    main(int(sys.argv[1]))

"""Scan a local campus with Debian's wapiti and slowhttptest, and summarize what it did.

Not part of the test suite (it takes a few minutes and needs both tools): run it before a
release, or after changing anything an attacker reaches.

    python3 scripts/scan.py                      # about 4 minutes
    python3 scripts/scan.py --scan-time 60 --slow-time 10 --report /tmp/wapiti.json

It starts ``python -m campus`` from this checkout (development settings, the memory store,
the demo account) on a free port, then

1. wapiti crawls and attacks it (every module that needs no Internet), for ``--scan-time``;
2. slowhttptest holds slow connections open (slowloris, slow body, slow read), while
   ``/healthz`` is asked every 50 ms;

and prints: the requests the server logged, how many were answered 5xx (must be 0), the
tracebacks it logged (must be 0), its stderr size, /healthz's answers during the slow
attacks, and wapiti's findings. The exit status is 1 if any 5xx or traceback was seen.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
#: wapiti modules that need no outside endpoint (ssrf and xxe call wapiti's own servers;
#: nikto and wapp download databases).
MODULES = [
    "backup", "blindsql", "brute_login_form", "buster", "cookieflags", "crlf", "csp", "csrf",
    "exec", "file", "htaccess", "http_headers", "methods", "permanentxss", "redirect",
    "shellshock", "sql", "xss",
]  # fmt: skip
#: Where wapiti starts besides "/": the routes a crawler cannot find in the SPA's shell.
STARTS = ["/login?next=/account", "/api/me", "/logout", "/healthz", "/robots.txt", "/account"]
SLOW = {
    "slowloris": ["-H", "-i", "5", "-u", "{url}/"],
    "slow body": ["-B", "-i", "5", "-s", "8192", "-t", "POST", "-u", "{url}/"],
    "slow read": ["-X", "-k", "3", "-n", "2", "-w", "1", "-y", "32", "-z", "16", "-u",
                  "{url}/js/views.js"],
}  # fmt: skip
ACCESS = re.compile(r'campus\.access: \S+ "(?P<method>\S+) (?P<path>\S+)" (?P<status>\d{3}) ')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def healthz(port: int) -> str:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            head = sock.recv(64)
    except OSError as exc:
        return type(exc).__name__
    return head.split(b" ")[1].decode() if head.startswith(b"HTTP/") else "no answer"


def start(port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPUS_")}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "campus", "--port", str(port)],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 20
    while healthz(port) != "200":
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise SystemExit(f"scan: campus did not start:\n{log.read_text()[-2000:]}")
        time.sleep(0.1)
    return process


def wapiti(url: str, seconds: int, report: Path, work: Path) -> tuple[int, float]:
    """wapiti's crawl gets a quarter of *seconds*, each attack module an equal share of the
    rest (wapiti bounds those two, not the whole); past twice that, it is interrupted and
    asked for its report."""
    crawl = max(5, seconds // 4)
    attack = max(5, (seconds - crawl) // len(MODULES))
    command = [
        "wapiti", "-u", f"{url}/", "--scope", "folder", "-m", ",".join(MODULES),
        "--max-scan-time", str(crawl), "--max-attack-time", str(attack),
        "-d", "4", "-t", "5", "-f", "json", "-o", str(report), "--flush-session",
        "--store-session", str(work / "session"), "--store-config", str(work / "config"),
        "--no-bugreport", "-v", "0",
    ]  # fmt: skip
    for path in STARTS:
        command += ["-s", url + path]
    started = time.monotonic()
    process = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        code = process.wait(2 * seconds + 60)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGINT)  # it then asks on stdin: "r" writes the report
        assert process.stdin is not None
        with contextlib.suppress(OSError):
            process.stdin.write(b"r\n" * 10)
            process.stdin.close()
        try:
            code = process.wait(120)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait()
    return code, time.monotonic() - started


def slow(url: str, port: int, seconds: int, connections: int) -> dict[str, Counter[str]]:
    answers: dict[str, Counter[str]] = {}
    for name, args in SLOW.items():
        command = ["slowhttptest", "-c", str(connections), "-r", "200", "-l", str(seconds)]
        command += [arg.format(url=url) for arg in args]
        attacker = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        seen: Counter[str] = Counter()
        while attacker.poll() is None:
            seen[healthz(port)] += 1
            time.sleep(0.05)
        answers[name] = seen
    return answers


def findings(report: Path) -> list[str]:
    """One line per wapiti finding (vulnerabilities, anomalies, additional notes)."""
    try:
        data = json.loads(report.read_text())
    except (OSError, ValueError):
        return ["(wapiti wrote no report)"]
    lines = []
    sections = {"vulnerabilities": "vulnerability", "anomalies": "anomaly", "additionals": "note"}
    for section, kind in sections.items():
        for category, items in (data.get(section) or {}).items():
            for item in items:
                where = f"{item.get('method', '')} {item.get('path', '')}".strip()
                info = " ".join(str(item.get("info", "")).split())[:160]
                lines.append(f"{kind}: {category}: {where}: {info}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scan-time", type=int, default=180, help="wapiti's budget, seconds")
    parser.add_argument("--slow-time", type=int, default=15, help="seconds per slow attack")
    parser.add_argument("--connections", type=int, default=500, help="per slow attack")
    parser.add_argument("--report", type=Path, help="keep wapiti's JSON report here")
    args = parser.parse_args()
    for tool in ("wapiti", "slowhttptest"):
        if shutil.which(tool) is None:
            print(f"scan: {tool} is not installed (apt-get install {tool})", file=sys.stderr)
            return 2
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log = work / "campus.log"
        report = args.report or work / "wapiti.json"
        campus = start(port, log)
        try:
            code, took = wapiti(url, args.scan_time, report, work)
            answers = slow(url, port, args.slow_time, args.connections)
            ended = time.monotonic()
            while (after := healthz(port)) != "200" and time.monotonic() - ended < 30:
                time.sleep(0.1)
            recovered = time.monotonic() - ended
        finally:
            campus.send_signal(signal.SIGTERM)
            try:
                exit_code = campus.wait(30)
            except subprocess.TimeoutExpired:
                campus.kill()
                exit_code = campus.wait()
        text = log.read_text(errors="replace")
        found = findings(report)
    statuses = Counter(match["status"] for match in ACCESS.finditer(text))
    server_errors = sum(n for status, n in statuses.items() if status.startswith("5"))
    tracebacks = text.count("Traceback")
    print(f"wapiti: exit {code}, {took:.0f} s, modules: {','.join(MODULES)}")
    print(f"requests logged: {sum(statuses.values())}  by status: {dict(sorted(statuses.items()))}")
    print(f"5xx answers: {server_errors}  tracebacks: {tracebacks}  stderr: {len(text)} bytes")
    for name, seen in answers.items():
        print(f"{name}: /healthz answers during the attack: {dict(seen)}")
    print(f"/healthz after the attacks: {after} within {recovered:.1f} s; campus exit {exit_code}")
    print(f"findings: {len(found)}")
    for line in found:
        print(f"  {line}")
    return 1 if server_errors or tracebacks or after != "200" else 0


if __name__ == "__main__":
    raise SystemExit(main())

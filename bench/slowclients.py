"""Slow and numerous clients against a real campus: does /healthz keep answering?

For each attack (slowhttptest's slowloris ``-H``, slow body ``-B`` and slow read ``-X``; and
``none``, the same probing without an attack: this machine's noise floor in the same run) this
starts ``python -m campus`` from this checkout under a lowered open-files limit (``ulimit -n``,
512 by default), lets slowhttptest open its connections (1,000 by default), and meanwhile
asks ``GET /healthz`` on a fresh connection every 20 ms. It reports, per attack:

- the probes that got 200, the ones refused at once (503: no connection slot free) and the
  ones that failed (no answer within 2 s, reset, refused by the kernel);
- p50 / p99 latency of the 200s: how fast a client is served once it has a slot;
- the server's CPU use during the attack (a spinning accept loop shows up here);
- the bytes the server wrote to stderr (tracebacks per failed accept show up here).

    python3 bench/slowclients.py                       # every attack, 30 s each
    python3 bench/slowclients.py --attacks slowloris --nofile 512 --connections 1000 --length 20
    python3 bench/slowclients.py --json bench/slowclients.json
    python3 bench/slowclients.py --attacks slowread --pipeline 10   # 10 requests per connection
    python3 bench/slowclients.py --probe-from 127.0.0.2  # probe as another client than the attacker

Needs Debian's slowhttptest. The targets: p99 of the 200s under 100 ms, no failed probe once
the attack's connections have been cut, stderr under 1 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

#: slowhttptest arguments per attack, after the common ``-c -r -l -u``.
ATTACKS: dict[str, tuple[str, list[str]]] = {
    # No attack: the probes alone, for this machine's noise floor in the same run.
    "none": ("/", []),
    # Headers that never end: a header line every 5 s.
    "slowloris": ("/", ["-H", "-i", "5"]),
    # An 8 KiB body sent a few bytes every 5 s. Not to /login: slowhttptest sends a foreign
    # Referer, which /login refuses before reading a byte; "/" reads the whole body first.
    "slowbody": ("/", ["-B", "-i", "5", "-s", "8192", "-t", "POST"]),
    # A module read 16 bytes every 2 s through a tiny window (-k: requests per connection,
    # pipelined; --pipeline 10 turns the attack into a burst of 10 requests per connection).
    "slowread": ("/js/views.js", ["-X", "-n", "2", "-w", "1", "-y", "32", "-z", "16"]),
}


@dataclass
class Probe:
    at: float  # seconds since the attack started
    outcome: str  # "200", "503", another status, "timeout", "reset", "refused"
    latency_ms: float


@dataclass
class Result:
    attack: str
    nofile: int
    connections: int
    length_s: int
    pipeline: int = 1  # slow read's requests per connection
    probe_from: str = "127.0.0.1"  # the probe's source address (the attacker's is 127.0.0.1)
    probes: int = 0
    ok: int = 0
    busy: int = 0
    failed: int = 0
    failed_after_cut: int = 0  # failures once the attack's connections were all cut
    p50_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    # Once every attacking connection is open (after the ramp at --rate): only slowness left.
    held_probes: int = 0
    held_ok: int = 0
    held_p99_ms: float | None = None
    server_cpu_percent: float = 0.0
    max_open_fds: int = 0
    stderr_bytes: int = 0
    tracebacks: int = 0
    exit_code: int | None = None
    outcomes: dict[str, int] = field(default_factory=dict)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def probe(port: int, timeout: float = 2.0, source: str = "127.0.0.1") -> tuple[str, float]:
    """GET /healthz on a new connection from address *source*: (outcome, milliseconds)."""
    started = time.perf_counter()
    request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    try:
        with socket.create_connection(
            ("127.0.0.1", port), timeout=timeout, source_address=(source, 0)
        ) as sock:
            sock.sendall(request)
            head = b""
            while b"\r\n" not in head:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                head += chunk
    except TimeoutError:
        return "timeout", 1000 * (time.perf_counter() - started)
    except ConnectionResetError:
        return "reset", 1000 * (time.perf_counter() - started)
    except ConnectionRefusedError:
        return "refused", 1000 * (time.perf_counter() - started)
    except OSError as exc:
        return f"error:{exc.errno}", 1000 * (time.perf_counter() - started)
    parts = head.split(b" ", 2)
    outcome = parts[1].decode() if len(parts) > 1 and head.startswith(b"HTTP/") else "closed"
    return outcome, 1000 * (time.perf_counter() - started)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def open_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def start_campus(
    port: int, nofile: int, stderr_path: Path, env: dict[str, str]
) -> subprocess.Popen[bytes]:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    with stderr_path.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "campus", "--port", str(port)],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            preexec_fn=limit,
        )
    deadline = time.monotonic() + 15
    while probe(port, timeout=1)[0] != "200":
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise SystemExit(f"campus did not start: {stderr_path.read_text()[-2000:]}")
        time.sleep(0.05)
    return process


def run(attack: str, args: argparse.Namespace) -> Result:
    path, extra = ATTACKS[attack]
    result = Result(attack, args.nofile, args.connections, args.length)
    result.probe_from = args.probe_from
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPUS_")}
    with tempfile.TemporaryDirectory() as tmp:
        stderr_path = Path(tmp) / "campus.stderr"
        campus = start_campus(port, args.nofile, stderr_path, env)
        cpu_before = cpu_seconds(campus.pid)
        if attack == "slowread":
            extra = [*extra, "-k", str(args.pipeline)]
            result.pipeline = args.pipeline
        command = [
            "slowhttptest", *extra,
            "-c", str(args.connections), "-r", str(args.rate), "-l", str(args.length),
            "-p", "3", "-u", f"http://127.0.0.1:{port}{path}",
        ]  # fmt: skip
        if attack == "none":
            command = ["sleep", str(args.length)]
        attacker = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp
        )
        probes: list[Probe] = []
        started = time.monotonic()
        peak_fds = 0
        stop = threading.Event()

        def watch_fds() -> None:
            nonlocal peak_fds
            while not stop.wait(0.25):
                peak_fds = max(peak_fds, open_fds(campus.pid))

        watcher = threading.Thread(target=watch_fds, daemon=True)
        watcher.start()
        while attacker.poll() is None:
            outcome, latency = probe(port, source=args.probe_from)
            probes.append(Probe(time.monotonic() - started, outcome, latency))
            time.sleep(0.02)
        elapsed = time.monotonic() - started
        # After the attack: the server must be fully back.
        for _ in range(50):
            outcome, latency = probe(port, source=args.probe_from)
            probes.append(Probe(time.monotonic() - started, outcome, latency))
            time.sleep(0.02)
        stop.set()
        watcher.join()
        result.server_cpu_percent = round(100 * (cpu_seconds(campus.pid) - cpu_before) / elapsed, 1)
        result.max_open_fds = peak_fds
        campus.send_signal(signal.SIGTERM)
        try:
            result.exit_code = campus.wait(30)
        except subprocess.TimeoutExpired:
            campus.kill()
            result.exit_code = campus.wait()
        log = stderr_path.read_bytes()
        if args.logs:
            args.logs.mkdir(parents=True, exist_ok=True)
            (args.logs / f"{attack}.stderr").write_bytes(log)
    result.stderr_bytes = len(log)
    result.tracebacks = log.count(b"Traceback")
    result.probes = len(probes)
    latencies = sorted(p.latency_ms for p in probes if p.outcome == "200")
    for p in probes:
        result.outcomes[p.outcome] = result.outcomes.get(p.outcome, 0) + 1
    result.ok = len(latencies)
    result.busy = result.outcomes.get("503", 0)
    result.failed = result.probes - result.ok - result.busy
    # slowhttptest's connections are all gone once the attack has ended (-l): the last
    # 50 probes run after that.
    result.failed_after_cut = sum(p.outcome not in ("200", "503") for p in probes[-50:])
    if latencies:
        result.p50_ms = round(statistics.median(latencies), 1)
        result.p99_ms = p99(latencies)
        result.max_ms = round(latencies[-1], 1)
    ramp = args.connections / args.rate + 2
    held = [p for p in probes[:-50] if p.at > ramp]
    result.held_probes = len(held)
    held_latencies = sorted(p.latency_ms for p in held if p.outcome == "200")
    result.held_ok = len(held_latencies)
    if held_latencies:
        result.held_p99_ms = p99(held_latencies)
    return result


def p99(ordered: list[float]) -> float:
    return round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--attacks", default=",".join(ATTACKS), help="comma-separated")
    parser.add_argument("--nofile", type=int, default=512, help="campus's open-files limit")
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--rate", type=int, default=200, help="new connections per second")
    parser.add_argument("--length", type=int, default=30, help="seconds per attack")
    parser.add_argument(
        "--pipeline", type=int, default=1, help="slow read: requests per connection (1-10)"
    )
    parser.add_argument(
        "--probe-from",
        default="127.0.0.1",
        help="the probe's source address: 127.0.0.2 is another client than the attacker"
        " (whose share, [server] max_connections_per_client, then leaves it room)",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--logs", type=Path, help="keep each run's server stderr in this directory")
    args = parser.parse_args()
    if shutil.which("slowhttptest") is None:
        print(
            "slowclients: slowhttptest is not installed (apt-get install slowhttptest)",
            file=sys.stderr,
        )
        return 2
    # slowhttptest itself needs a descriptor per connection.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = (
        min(hard, args.connections + 256)
        if hard != resource.RLIM_INFINITY
        else args.connections + 256
    )
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    results = []
    for attack in args.attacks.split(","):
        result = run(attack.strip(), args)
        results.append(asdict(result))
        print(
            f"{result.attack:9}  probes {result.probes:4}  200 {result.ok:4}  503 {result.busy:4}"
            f"  failed {result.failed:4} (after the attack: {result.failed_after_cut})"
            f"  p50 {result.p50_ms} ms  p99 {result.p99_ms} ms  max {result.max_ms} ms"
            f"  held: {result.held_ok}/{result.held_probes} ok, p99 {result.held_p99_ms} ms"
            f"  cpu {result.server_cpu_percent}%  fds<= {result.max_open_fds}"
            f"  stderr {result.stderr_bytes} B ({result.tracebacks} tracebacks)"
            f"  exit {result.exit_code}",
            flush=True,
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""An hour of "lock the victim out", in a few minutes: does the victim still sign in?

Issue 20's attack, rerun with time shortened by ``--scale`` (30: the 900 s window becomes
30 s, the hour 2 minutes, the victim's 3 s between tries 0.1 s): an attacker on one address
fails as the victim's email, and once throttled waits out exactly ``Retry-After`` and fails
again, keeping the email locked. Once it is locked, every ``--every`` simulated seconds (3),
the victim signs in (and out) with the right password twice: from a browser that signed in
once before the attack (its device cookie) and from a browser that never did (none).
Reported per campus checkout (``--root``, repeatable: this one and an export of main):
each victim's answers and success rate (wanted 100% for the trusted browser), and how many
failures the attacker got counted.

    python3 bench/lockout.py                                  # this checkout
    git archive main | tar -x -C /tmp/campus-main
    python3 bench/lockout.py --root . --root /tmp/campus-main --json bench/lockout.json

campus runs in development (memory store), one process, with a users file of its own whose
hashes are cheap (the hashing cost is not what this measures). Everything stays on loopback.
"""

from __future__ import annotations

import argparse
import http.client
import json
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import argon2
from harness import free_port, start_campus, stop

REPO = Path(__file__).resolve().parent.parent
VICTIM = {"email": "victim@campus.test", "password": "the victim's right password"}
ATTACKER, TRUSTED, NEW = "127.0.0.66", "127.0.0.10", "127.0.0.11"


class Browser:
    """A client from one loopback address that keeps the cookies it is given."""

    def __init__(self, port: int, source: str) -> None:
        self.port, self.source = port, source
        self.cookies: dict[str, str] = {}

    def post(self, path: str, body: dict[str, str] | None = None) -> tuple[int, dict[str, str]]:
        conn = http.client.HTTPConnection(
            "127.0.0.1", self.port, timeout=30, source_address=(self.source, 0)
        )
        headers = {"Content-Type": "application/json"}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        conn.request("POST", path, json.dumps(body or {}), headers)
        response = conn.getresponse()
        response.read()
        for header, value in response.getheaders():
            if header.lower() == "set-cookie":
                name, _, rest = value.partition("=")
                cookie = rest.split(";", 1)[0]
                if cookie and "max-age=0" not in value.lower():
                    self.cookies[name] = cookie
                else:
                    self.cookies.pop(name, None)
        conn.close()
        return response.status, {k.lower(): v for k, v in response.getheaders()}


def run(root: Path, args: argparse.Namespace, users: Path) -> dict[str, Any]:
    port = free_port()
    window = max(1, round(900 / args.scale))
    server = start_campus(
        root,
        port,
        CAMPUS_LOG_ACCESS="false",
        CAMPUS_USERS_FILE=str(users),
        CAMPUS_LOGIN_WINDOW=str(window),
    )
    try:
        trusted, attacker = Browser(port, TRUSTED), Browser(port, ATTACKER)
        assert trusted.post("/login", VICTIM)[0] == 200  # once, before the attack
        trusted.post("/logout")
        duration = 3600 / args.scale
        until = time.monotonic() + duration
        counted = Counter[int]()

        def attack() -> None:
            wrong = {**VICTIM, "password": "a guess"}
            while time.monotonic() < until:
                status, headers = attacker.post("/login", wrong)
                counted[status] += 1
                if status == 429:
                    time.sleep(
                        min(float(headers.get("retry-after", "1")), until - time.monotonic())
                    )

        attacking = threading.Thread(target=attack)
        attacking.start()
        while not counted[429]:  # the email is locked before the victim's first try
            time.sleep(0.01)
        answers: dict[str, Counter[int]] = {"trusted": Counter(), "new": Counter()}
        while time.monotonic() < until:
            started = time.monotonic()
            new = Browser(port, NEW)  # a browser that never signed in: no device cookie
            for name, browser in (("trusted", trusted), ("new", new)):
                status, _ = browser.post("/login", VICTIM)
                answers[name][status] += 1
                if status == 200:
                    browser.post("/logout")
            time.sleep(max(0.0, args.every / args.scale - (time.monotonic() - started)))
        attacking.join()
        return {
            "root": str(root),
            "window_s": window,
            "simulated_minutes": round(duration * args.scale / 60),
            "attacker": {str(k): v for k, v in sorted(counted.items())},
            **{
                f"{name}_victim": {
                    "answers": {str(k): v for k, v in sorted(seen.items())},
                    "success_rate": round(seen[200] / max(1, sum(seen.values())), 3),
                }
                for name, seen in answers.items()
            },
        }
    finally:
        stop(server)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--root", action="append", type=Path, help="a campus checkout")
    parser.add_argument("--scale", type=float, default=30, help="real time is this much shorter")
    parser.add_argument(
        "--every", type=float, default=3.0, help="simulated seconds between the victim's tries"
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        users = Path(scratch) / "users.json"
        cheap = argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
        record = {"email": VICTIM["email"], "password_hash": cheap.hash(VICTIM["password"])}
        users.write_text(json.dumps([record]))
        results = [run(root.resolve(), args, users) for root in args.root or [REPO]]
    for result in results:
        print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()

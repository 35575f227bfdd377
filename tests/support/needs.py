"""What a test needs beyond Python, redis-server and git, said once, by the file that holds it.

tests/conftest.py marks each test from here (so no test can forget its marker), and
scripts/test asks this module what to install before it runs the tests it was given:

    python3 tests/support/needs.py [--quick] [PYTEST ARGS...]

prints one line per thing to install: ``need COMMAND DEBIAN-PACKAGE...`` or ``npm DIRECTORY``;
``--quick-arguments`` prints pytest's arguments for the quick run, one a line. Plain Python:
it runs before the virtualenv exists.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TESTS = REPO / "tests"

#: The pytest marker of the tests in a file (or a directory) of this name, and what they run.
NEEDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "e2e": ("browser", ("need chromium chromium", "need node nodejs npm", "npm tests/e2e")),
    "test_nginx.py": (
        "nginx",
        ("need nginx nginx", "need curl curl ca-certificates", "need openssl openssl"),
    ),
    "test_prometheus.py": ("prometheus", ("need prometheus prometheus",)),
    "test_systemd_container.py": (
        "container",
        ("need mmdebstrap mmdebstrap", "need systemd-nspawn systemd-container"),
    ),
    "test_express.py": ("node", ("need node nodejs npm", "npm tests/express")),
    "test_systemd.py": ("systemd", ("need systemd-analyze systemd",)),
}

#: Files whose tests take seconds each: they start campus processes (the command line, the
#: real server, its connection bounds and workers), wait out timeouts or build a wheel.
#: ``scripts/test --quick`` leaves them, and the tests marked ``slow`` one by one, to the full
#: run. A test that starts a campus process or a Redis Cluster unmarked fails, saying so
#: (:func:`require_slow`): nobody can forget the marker.
SLOW = {
    "test_accounts_live.py",
    "test_cli_sessions.py",
    "test_cli_users.py",
    "test_connections.py",
    "test_eventloop.py",
    "test_examples.py",
    "test_fuzz.py",
    "test_ipv6_prefix.py",
    "test_login_cost.py",
    "test_logs.py",
    "test_openapi.py",
    "test_outage.py",
    "test_properties.py",
    "test_redis_acl.py",
    "test_redis_crash.py",
    "test_redis_topologies.py",
    "test_scale_out.py",
    "test_scripts.py",
    "test_server.py",
    "test_stranger.py",
    "test_throttle_concurrency.py",
    "test_timing.py",
    "test_workers.py",
}
#: Fixtures that take seconds to set up: a test that uses one is slow.
SLOW_FIXTURES = {"redis_cluster", "own_cluster", "redis_sentinel", "express"}

#: The markers ``scripts/test --quick`` leaves out, and its ``-m`` expression.
NOT_QUICK = ("browser", "nginx", "prometheus", "container", "slow")
QUICK = " and ".join(f"not {marker}" for marker in NOT_QUICK)


def markers_of(path: Path, fixtures: Iterable[str] = ()) -> set[str]:
    """The markers of a test: from its file's name, its directories' and its fixtures."""
    names = {path.name, *(parent.name for parent in path.parents)}
    found = {NEEDS[name][0] for name in names if name in NEEDS}
    if path.name in SLOW or SLOW_FIXTURES.intersection(fixtures):
        found.add("slow")
    return found


def needs_of(paths: list[Path], *, quick: bool) -> list[str]:
    """What the test files under *paths* need, in a stable order, without repeats."""
    wanted: dict[str, None] = {}
    for path in paths:
        files = sorted(path.rglob("test_*.py")) if path.is_dir() else [path]
        for file in files:
            names = {file.name, *(parent.name for parent in file.parents)}
            for name in sorted(names & NEEDS.keys()):
                marker, lines = NEEDS[name]
                if not quick or marker not in NOT_QUICK:
                    wanted.update(dict.fromkeys(lines))
    return list(wanted)


def paths_in(args: list[str]) -> list[Path]:
    """The test files and directories pytest was given (``path::test`` too); all by default."""
    paths = []
    for arg in args:
        candidate = Path(arg.split("::", 1)[0])
        if not arg.startswith("-") and candidate.exists():
            paths.append(candidate.resolve())
    return paths or [TESTS]


def quick_arguments() -> list[str]:
    """pytest's arguments for ``scripts/test --quick``: the marker expression, and the files
    it would deselect whole, left out of collection too (importing them takes time)."""
    whole = {name for name, (marker, _) in NEEDS.items() if marker in NOT_QUICK} | SLOW
    ignored = sorted(path for path in TESTS.rglob("*") if path.name in whole)
    return ["-m", QUICK, *(f"--ignore={path.relative_to(REPO)}" for path in ignored)]


def main(args: list[str]) -> int:
    if args == ["--quick-arguments"]:
        print("\n".join(quick_arguments()))
        return 0
    quick = bool(args) and args[0] == "--quick"
    for line in needs_of(paths_in(args[quick:]), quick=quick):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

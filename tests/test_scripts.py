"""The README's two commands, scripts/serve and scripts/test, run in a throwaway copy of the
checkout: each makes its virtualenv (or reuses it) and installs what is missing, then works.

The virtualenv is made with --system-site-packages (VENV_OPTIONS), so that the pinned
requirements are found already installed instead of downloaded again; everything else is
what a newcomer runs.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import REPO, campus_env, free_port


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The files git knows, copied: what a fresh clone holds."""
    copy = tmp_path_factory.mktemp("clone") / "campus"
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.split(b"\0")
    for name in filter(None, (entry.decode() for entry in listed)):
        if (REPO / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, copy / name)
    yield copy


def script_env(checkout: Path) -> dict[str, str]:
    return campus_env(VENV=str(checkout / ".venv"), VENV_OPTIONS="--system-site-packages")


def serve(checkout: Path) -> tuple[str, int]:
    """scripts/serve until it answers; returns what it printed while setting up."""
    port = free_port()
    process = subprocess.Popen(
        [str(checkout / "scripts" / "serve"), "--port", str(port)],
        cwd=checkout,
        env=script_env(checkout),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 300
    try:
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    assert r.status == 200
                    return _stop(process), port
            except OSError:
                assert process.poll() is None, _stop(process)
                assert time.monotonic() < deadline, _stop(process)
                time.sleep(0.2)
    finally:
        if process.poll() is None:
            _stop(process)


def _stop(process: subprocess.Popen[str]) -> str:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=30)
    return out


def test_serve_sets_up_then_serves_and_then_reuses_it(checkout: Path) -> None:
    first, _ = serve(checkout)
    assert "creating the virtualenv" in first and "installing requirements.txt" in first
    assert (checkout / ".venv" / "bin" / "campus").exists()
    assert "memory store" in first and "Traceback" not in first
    again, _ = serve(checkout)
    assert "creating the virtualenv" not in again and "installing" not in again


def test_the_test_command_runs_the_suite(checkout: Path) -> None:
    done = subprocess.run(
        [
            str(checkout / "scripts" / "test"),
            "tests/test_config.py",
            "-q",
            "-p",
            "no:cacheprovider",
        ],
        cwd=checkout,
        env=script_env(checkout),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert " passed" in done.stdout and "failed" not in done.stdout

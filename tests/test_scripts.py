"""The README's two commands, scripts/serve and scripts/test, run in a throwaway copy of the
checkout: each makes its virtualenv (or reuses it) and installs what is missing, then works.

The virtualenv finds the pinned requirements this suite runs with (PYTHONPATH), so that
they count as installed instead of being downloaded again; everything else is what a
newcomer runs.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.servers import REPO, Campus, campus_env, installed_requirements


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
    return campus_env(VENV=str(checkout / ".venv"), PYTHONPATH=installed_requirements())


def serve(checkout: Path) -> str:
    """scripts/serve until it answers; returns what it printed while setting up."""
    serve = str(checkout / "scripts" / "serve")
    return Campus(script_env(checkout), cwd=checkout, command=[serve], startup=300).stop()


def test_serve_sets_up_then_serves_and_then_reuses_it(checkout: Path) -> None:
    first = serve(checkout)
    assert "creating the virtualenv" in first and "installing requirements.txt" in first
    assert (checkout / ".venv" / "bin" / "campus").exists()
    assert "memory store" in first and "Traceback" not in first
    again = serve(checkout)
    assert "creating the virtualenv" not in again and "installing" not in again


def test_the_test_command_runs_the_suite(checkout: Path) -> None:
    done = subprocess.run(
        [
            str(checkout / "scripts" / "test"),
            str(next((REPO / "tests").rglob("test_config.py")).relative_to(REPO)),
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

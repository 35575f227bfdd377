"""What scripts/test installs and runs for each tier (tests/support/needs.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import needs, processes
from tests.support.needs import markers_of, needs_of, paths_in, quick_arguments
from tests.support.servers import REPO

TESTS = REPO / "tests"


def test_one_test_file_needs_nothing_but_python_and_redis() -> None:
    config = str(next(TESTS.rglob("test_config.py")).relative_to(REPO))
    assert needs_of(paths_in([config, "-x"]), quick=False) == []
    assert needs_of(paths_in([f"{config}::test_x"]), quick=True) == []


def test_the_whole_suite_needs_everything_and_the_quick_run_no_browser_nginx_or_container() -> None:
    everything = "\n".join(needs_of(paths_in([]), quick=False))
    quick = "\n".join(needs_of(paths_in([]), quick=True))
    for tool in ("chromium", "nginx", "prometheus", "mmdebstrap", "systemd-nspawn"):
        assert f"need {tool} " in everything
        assert tool not in quick


def test_markers_come_from_the_file_its_directories_and_its_fixtures() -> None:
    assert markers_of(TESTS / "e2e" / "test_spa.py") == {"browser"}
    assert markers_of(TESTS / "test_nginx.py") == {"nginx"}
    assert markers_of(TESTS / "test_server.py") == {"slow"}
    assert markers_of(TESTS / "test_config.py") == set()
    assert markers_of(TESTS / "test_sessions_api.py", ["redis_cluster"]) == {"slow"}


def test_every_file_named_in_the_tiers_exists() -> None:
    """A renamed test file must not slip out of its tier unnoticed."""
    names = {path.name for path in TESTS.rglob("*")}
    assert set(needs.NEEDS) | needs.SLOW <= names


def test_the_quick_run_leaves_whole_files_out_of_collection() -> None:
    arguments = quick_arguments()
    assert arguments[:2] == ["-m", needs.QUICK]
    ignored = {Path(a.split("=", 1)[1]).name for a in arguments[2:]}
    assert {"e2e", "test_nginx.py", "test_server.py"} <= ignored
    assert "test_config.py" not in ignored


def test_a_test_that_starts_a_process_unmarked_fails_saying_so(
    request: pytest.FixtureRequest,
) -> None:
    assert request.node.get_closest_marker("slow") is None
    with pytest.raises(pytest.fail.Exception, match="mark it slow"):
        processes.require_slow("a campus process")

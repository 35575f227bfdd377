"""[server] event_loop: uvloop when installed (the default), asyncio's loop on request."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from campus.runtime.eventloop import EventLoopError, loop_factory, loop_name, run
from tests.support.servers import Campus, campus_env, run_campus


def test_auto_takes_uvloop_when_installed_and_asyncio_when_told() -> None:
    pytest.importorskip("uvloop")
    assert run(_name(), loop_factory("auto")) == "uvloop"
    assert run(_name(), loop_factory("uvloop")) == "uvloop"
    assert run(_name(), loop_factory("asyncio")) == "asyncio"


def test_without_uvloop_auto_falls_back_and_uvloop_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # what `import uvloop` sees uninstalled
    assert loop_factory("auto") is None
    with pytest.raises(EventLoopError, match="uvloop is not installed"):
        loop_factory("uvloop")


async def _name() -> str:
    return loop_name(asyncio.get_running_loop())


@pytest.mark.parametrize("choice", ["auto", "asyncio"])
def test_the_server_runs_and_says_on_which_loop(choice: str, users_file: Path) -> None:
    pytest.importorskip("uvloop")
    env = campus_env(CAMPUS_USERS_FILE=str(users_file), CAMPUS_SERVER_EVENT_LOOP=choice)
    server = Campus(env)
    try:
        assert server.request("/healthz")[0] == 200
    finally:
        log = server.stop()
    assert server.process.returncode == 0
    expected = "uvloop" if choice == "auto" else "asyncio"
    assert f"memory store, {expected}) listening on http://127.0.0.1:" in log


def test_an_unknown_loop_is_one_line_naming_the_variable() -> None:
    result = run_campus(campus_env(CAMPUS_SERVER_EVENT_LOOP="trio"), "--port", "0")
    assert result.returncode != 0
    assert result.stderr.strip() == (
        "campus: CAMPUS_SERVER_EVENT_LOOP: must be auto, uvloop or asyncio, got 'trio'"
    )

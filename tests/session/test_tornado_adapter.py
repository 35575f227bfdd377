"""What campus/session/tornado_adapter.py assumes of Tornado's private state, pinned.

Each test runs a plain ``tornado.web.RequestHandler`` (no session) on the installed Tornado
and records what the adapter reads at each step, or what setting ``_finished`` makes Tornado
do. CI runs these on the newest Tornado ``pyproject.toml`` allows as well as on the pin: a
release that renames or repurposes one of these attributes fails here first.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import tornado.web
from tornado.httpclient import AsyncHTTPClient

from campus.session import tornado_adapter as adapter

pytestmark = pytest.mark.gen_test


class Recorder(tornado.web.RequestHandler):
    def note(self, step: str) -> None:
        self.settings["seen"][step] = (
            adapter.is_finished(self),
            adapter.headers_written(self),
            adapter.has_body(self),
        )


class Steps(Recorder):
    async def get(self) -> None:
        self.note("start")
        self.write("x")
        self.note("written")
        await self.flush()
        self.note("flushed")
        self.write("y")
        self.note("written after flush")

    def on_finish(self) -> None:
        self.note("on_finish")
        self.settings["done"].set()


class Cleared(Recorder):
    def get(self) -> None:
        self.write("x")
        self.clear()
        self.note("cleared")
        self.write("y")


class FinishedInPrepare(Recorder):
    """Marks itself finished in prepare() and finishes for real a moment later."""

    def prepare(self) -> None:
        adapter.set_finished(self, True)
        try:
            self.write("refused")
        except RuntimeError as exc:
            self.settings["write_error"] = str(exc)
        asyncio.get_running_loop().call_soon(self.finish_for_real)

    def finish_for_real(self) -> None:
        adapter.set_finished(self, False)
        self.finish("finished later")

    def get(self) -> None:
        self.settings["get_ran"] = True  # Tornado must skip the method: finished in prepare


class FinishedInMethod(Recorder):
    """Marked finished by the method: auto-finish must not finish again; a later error is
    only logged, the response stays the one finished later."""

    def get(self) -> None:
        adapter.set_finished(self, True)
        asyncio.get_running_loop().call_soon(self.finish_for_real)
        raise RuntimeError("an error after the handler finished")

    def finish_for_real(self) -> None:
        adapter.set_finished(self, False)
        self.finish("finished later")


class BodyWithStatus(tornado.web.RequestHandler):
    def get(self, status: str) -> None:
        self.set_status(int(status))
        self.write("body")
        try:
            self.finish()
        except (RuntimeError, AssertionError):  # Tornado 6.5 and later raise; 6.4 asserts
            self.settings["refused"].append(int(status))
            self.clear()
            self.set_status(int(status))
            self.finish()


@pytest.fixture
def app() -> tornado.web.Application:
    return tornado.web.Application(
        [
            (r"/steps", Steps),
            (r"/cleared", Cleared),
            (r"/finished-in-prepare", FinishedInPrepare),
            (r"/finished-in-method", FinishedInMethod),
            (r"/status/(\d+)", BodyWithStatus),
        ],
        seen={},
        done=asyncio.Event(),
        refused=[],
    )


async def test_finished_headers_and_body_follow_the_response(
    http_client: AsyncHTTPClient, base_url: str, app: tornado.web.Application
) -> None:
    response = await http_client.fetch(base_url + "/steps")
    assert response.body == b"xy"
    await asyncio.wait_for(app.settings["done"].wait(), 5)
    # (finished, headers written, body waiting)
    assert app.settings["seen"] == {
        "start": (False, False, False),
        "written": (False, False, True),
        "flushed": (False, True, False),
        "written after flush": (False, True, True),
        "on_finish": (True, True, False),
    }


async def test_clear_empties_the_body(
    http_client: AsyncHTTPClient, base_url: str, app: tornado.web.Application
) -> None:
    response = await http_client.fetch(base_url + "/cleared")
    assert response.body == b"y"
    assert app.settings["seen"]["cleared"] == (False, False, False)


async def test_marked_finished_in_prepare_the_method_never_runs(
    http_client: AsyncHTTPClient, base_url: str, app: tornado.web.Application
) -> None:
    response = await http_client.fetch(base_url + "/finished-in-prepare")
    assert response.body == b"finished later"
    assert app.settings["write_error"] == "Cannot write() after finish()"
    assert "get_ran" not in app.settings


async def test_marked_finished_in_the_method_no_auto_finish_and_no_error_page(
    http_client: AsyncHTTPClient, base_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    response = await http_client.fetch(base_url + "/finished-in-method", raise_error=False)
    assert (response.code, response.body) == (200, b"finished later")
    assert "an error after the handler finished" in caplog.text  # logged, not sent
    assert "finish() called twice" not in caplog.text  # auto-finish stayed away


@pytest.mark.parametrize("status", [200, 204, 304, 404, 500])
async def test_refuses_body_is_tornados_rule(
    http_client: AsyncHTTPClient, base_url: str, app: tornado.web.Application, status: int
) -> None:
    await http_client.fetch(f"{base_url}/status/{status}", raise_error=False)
    refused: list[Any] = app.settings["refused"]
    assert (status in refused) == adapter.refuses_body(status)

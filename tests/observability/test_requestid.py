"""X-Request-ID on every response, and the same id in every log line of that request."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
import tornado.web

from campus.observability.logs import JsonFormatter
from campus.observability.logwriter import LogWriter
from campus.observability.requestid import request_id_for
from campus.session.contract import ContractClock
from campus.session.store import new_session_id
from campus.web.app import make_app
from campus.web.services import Services
from tests.support.apps import DownStore, Fetch, make_services
from tests.support.rawhttp import build, exchange
from tests.support.servers import REPO

GENERATED = re.compile(r"[0-9a-f]{16}")


@contextlib.contextmanager
def json_lines() -> Iterator[list[dict[str, Any]]]:
    """Every line the real writer produces in the block (every logger), parsed at its end."""
    stream = io.StringIO()
    writer = LogWriter(stream)
    writer.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(writer)
    level = root.level
    root.setLevel(logging.INFO)
    parsed: list[dict[str, Any]] = []
    try:
        yield parsed
    finally:
        root.removeHandler(writer)
        root.setLevel(level)
        parsed += [json.loads(line) for line in stream.getvalue().splitlines()]


@pytest.mark.parametrize(
    "given",
    ["abc", "A" * 64, "req-2026.12.01_x", "0"],
)
def test_a_valid_id_is_kept(given: str) -> None:
    assert request_id_for(given) == given


@pytest.mark.parametrize(
    "given", [None, "", "A" * 65, "a b", "a,b", "ü", "a\nb", "x;y", "<script>"]
)
def test_anything_else_gets_a_new_random_id(given: str | None) -> None:
    first, second = request_id_for(given), request_id_for(given)
    assert GENERATED.fullmatch(first) and first != second


@pytest.mark.gen_test
async def test_every_kind_of_response_carries_the_id(fetch: Fetch) -> None:
    requests: list[tuple[str, dict[str, Any], int]] = [
        ("/healthz", {}, 200),
        ("/api/me", {}, 401),
        ("/login", {"method": "POST", "body": "nope"}, 400),
        ("/logout", {"method": "DELETE"}, 405),
        ("/api/unknown", {}, 404),
        ("/missing.js", {}, 404),
        ("/js/main.js", {}, 200),  # a dist/ file
        ("/robots.txt", {}, 200),  # a static/ file
        ("/courses/42", {}, 200),  # the SPA shell
        ("/courses/42", {"method": "HEAD"}, 200),
        ("/courses/42", {"method": "POST", "body": "{}"}, 405),
        ("/metrics", {"headers": {"X-Forwarded-For": "203.0.113.9"}}, 404),
    ]
    for n, (path, kwargs, status) in enumerate(requests):
        headers = {**kwargs.pop("headers", {}), "X-Request-ID": f"case-{n}"}
        response = await fetch(path, headers=headers, **kwargs)
        assert response.code == status, path
        assert response.headers["X-Request-ID"] == f"case-{n}", path
    shell = await fetch("/courses/42")
    conditional = {"If-None-Match": shell.headers["ETag"], "X-Request-ID": "conditional"}
    response = await fetch("/courses/42", headers=conditional)
    assert response.code == 304 and response.headers["X-Request-ID"] == "conditional"
    response = await fetch("/api/me", headers={"X-Request-ID": "a b"})
    assert GENERATED.fullmatch(response.headers["X-Request-ID"])


@pytest.mark.gen_test
async def test_the_default_handler_carries_it(http_server: Any, http_port: int) -> None:
    request = build("OPTIONS", "*", [("X-Request-ID", "star")])
    loop = asyncio.get_running_loop()
    response = await loop.run_in_executor(None, exchange, http_port, request)
    assert response.status == 404
    assert response.headers.get("x-request-id") == "star"


@pytest.mark.gen_test
async def test_the_access_line_carries_the_id(fetch: Fetch) -> None:
    with json_lines() as lines:
        await fetch("/api/me", headers={"X-Request-ID": "trace-me"})
        await fetch("/api/me?token=hunter2")
    assert lines[0]["request_id"] == "trace-me"
    assert GENERATED.fullmatch(lines[1]["request_id"])
    assert lines[1]["path"] == "/api/me" and "hunter2" not in json.dumps(lines)


@pytest.fixture
def down_services(config: Any, clock: ContractClock) -> Services:
    from dataclasses import replace

    services = make_services(config, clock)
    manager = services.sessions
    manager.store = DownStore()
    return replace(services, sessions=manager)


@pytest.fixture
def app(request: pytest.FixtureRequest, services: Services) -> tornado.web.Application:
    if "down_services" in request.fixturenames:
        services = request.getfixturevalue("down_services")
    return make_app(services, root=str(REPO))


@pytest.mark.gen_test
async def test_errors_of_a_request_carry_its_id(down_services: Services, fetch: Fetch) -> None:
    with json_lines() as records:
        signed = down_services.sessions.signer.sign("campus.sid", new_session_id())
        cookie = {"Cookie": f"campus.sid={signed}", "X-Request-ID": "outage-1"}
        response = await fetch("/api/me", headers=cookie)
        assert response.code == 503
        await fetch("/healthz", headers={"X-Request-ID": "outage-2"})
    access = [r for r in records if r["logger"] == "campus.access"]
    expected = [("outage-1", 503), ("outage-2", 503)]
    assert [(r["request_id"], r["status"]) for r in access] == expected
    others = [r for r in records if r["logger"] != "campus.access"]
    assert others, records  # Tornado logs each 503
    assert {r["request_id"] for r in others if "/api/me" in r["message"]} == {"outage-1"}
    assert {r["request_id"] for r in others} <= {"outage-1", "outage-2"}
    assert all("request_id" in r for r in others)

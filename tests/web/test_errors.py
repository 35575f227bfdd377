"""Where errors become answers (web/handlers/base.py): one place for the store's 503, one
function for every JSON error body, one log line each, never a query string in it."""

from __future__ import annotations

import json
import logging

import pytest
import tornado.web
from tornado.httpclient import HTTPResponse

from campus.session import StoreUnavailable
from campus.session.contract import ContractClock
from campus.session.store import LiveSession
from campus.session.stores.memory import MemoryStore
from campus.web.app import make_app
from campus.web.handlers.auth import SessionHandler
from campus.web.handlers.base import BaseHandler
from campus.web.services import Services, build_sessions
from tests.support.apps import Fetch, logged_in
from tests.support.servers import REPO

pytestmark = pytest.mark.gen_test


class StoreFailsHere(SessionHandler):
    """A handler whose store call fails after the session loaded: it lets the error go."""

    async def get(self) -> None:
        raise StoreUnavailable("redis: no answer within 1.0s")


class Bug(BaseHandler):
    def get(self) -> None:
        raise ValueError("a bug")


class ListingFails(MemoryStore):
    """A store that loads sessions but cannot list a user's (an outage in mid-request)."""

    async def sessions_of(self, user: str) -> list[LiveSession]:
        raise StoreUnavailable("down")


@pytest.fixture
def app(services: Services, clock: ContractClock) -> tornado.web.Application:
    store = ListingFails(max_sessions=100, clock=clock)
    sessions = build_sessions(services.config, store, clock=clock)
    failing = Services(config=services.config, sessions=sessions, users=services.users)
    application = make_app(failing, root=str(REPO))
    application.add_handlers(r".*$", [(r"/test/store", StoreFailsHere), (r"/test/bug", Bug)])
    return application


def assert_store_unavailable(response: HTTPResponse, caplog: pytest.LogCaptureFixture) -> None:
    assert response.code == 503
    assert json.loads(response.body) == {"errorMessage": "Session store unavailable"}
    assert response.headers["Retry-After"] == "1"
    assert response.headers["Content-Type"].startswith("application/json")
    assert "Set-Cookie" not in response.headers
    lines = [r for r in caplog.records if "session store unavailable" in r.getMessage()]
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING
    assert lines[0].exc_info is None  # one line, no traceback


async def test_a_store_error_any_handler_lets_go_is_the_503(
    fetch: Fetch, caplog: pytest.LogCaptureFixture
) -> None:
    assert_store_unavailable(await fetch("/test/store?token=s3cret"), caplog)
    assert "s3cret" not in caplog.text


async def test_the_sessions_listing_failing_mid_request_is_the_503(
    fetch: Fetch, caplog: pytest.LogCaptureFixture
) -> None:
    cookie = await logged_in(fetch)
    response = await fetch("/api/sessions", headers={"Cookie": f"campus.sid={cookie}"})
    assert_store_unavailable(response, caplog)


async def test_a_bug_is_a_json_500_logged_with_its_traceback_but_no_query(
    fetch: Fetch, caplog: pytest.LogCaptureFixture
) -> None:
    response = await fetch("/test/bug?token=s3cret")
    assert response.code == 500
    assert json.loads(response.body) == {"errorMessage": "Internal server error"}
    (line,) = [r for r in caplog.records if r.getMessage().startswith("Uncaught exception")]
    assert line.getMessage() == "Uncaught exception GET /test/bug (127.0.0.1)"
    assert line.exc_info is not None and "s3cret" not in caplog.text

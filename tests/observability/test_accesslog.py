"""One access-log line per request; no session id, password or secret in any log line."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import redis
import tornado.web
from tornado.ioloop import IOLoop
from tornado.web import decode_signed_value

from campus.config import Config, ServerConfig
from campus.observability.accesslog import MAX_PATH, printable
from campus.session.contract import ContractClock
from campus.web.app import make_app
from campus.web.services import Services
from tests.support.apps import PASSWORD, Fetch, closing_store, make_services
from tests.support.logs import access_lines
from tests.support.servers import REPO, SECRET, Campus, RedisServer, production_env

WRONG = "Tr0ub4dor&3-not-it"


@pytest.mark.gen_test
async def test_one_line_per_request_with_method_path_status(
    fetch: Fetch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    body = json.dumps({"email": "ann@campus.test", "password": PASSWORD})
    requests = [
        ("/healthz", "GET", None, 200),
        ("/api/me?token=hunter2", "GET", None, 401),
        ("/login", "POST", body, 200),
        ("/missing.js", "GET", None, 404),
        ("/courses/42", "GET", None, 200),
        ("/logout", "DELETE", None, 405),
    ]
    for path, method, payload, status in requests:
        response = await fetch(path, method=method, body=payload)
        assert response.code == status
    lines = access_lines(caplog)
    expected = [(m, p.split("?")[0], str(s)) for p, m, _, s in requests]
    assert [(line["method"], line["path"], line["status"]) for line in lines] == expected
    assert {line["client"] for line in lines} == {"127.0.0.1"}
    assert "hunter2" not in caplog.text and "token=" not in caplog.text


@pytest.fixture
def behind_proxy(config: Config, clock: ContractClock, io_loop: IOLoop) -> Iterator[Services]:
    server = ServerConfig(trust_proxy=True)
    yield from closing_store(
        make_services(dataclasses.replace(config, server=server), clock), io_loop
    )


@pytest.fixture
def app(request: pytest.FixtureRequest, services: Services) -> tornado.web.Application:
    if "behind_proxy" in request.fixturenames:
        services = request.getfixturevalue("behind_proxy")
    return make_app(services, root=str(REPO))


@pytest.mark.gen_test
async def test_the_client_address_comes_from_a_trusted_proxy(
    behind_proxy: Services, fetch: Fetch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    headers = {"X-Forwarded-For": "198.51.100.1, 203.0.113.7"}
    await fetch("/healthz", headers=headers)
    assert access_lines(caplog)[0]["client"] == "203.0.113.7"


@pytest.mark.gen_test
async def test_an_untrusted_forwarded_for_is_ignored(
    fetch: Fetch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    await fetch("/healthz", headers={"X-Forwarded-For": "203.0.113.7"})
    assert access_lines(caplog)[0]["client"] == "127.0.0.1"


def test_paths_cannot_forge_log_lines_or_flood_them() -> None:
    assert printable('/a\nb"c\x1b[2J') == "/a\\x0ab\\x22c\\x1b[2J"
    assert printable("/ü ") == "/\\xfc\\x20"
    assert len(printable("/" + "a" * 5000)) == MAX_PATH
    # A quote or a backslash would fake a field's end or an escape inside the line.
    assert printable('/a" 200 1.0ms') == "/a\\x22\\x20200\\x201.0ms"
    assert printable("/a\\x0a") == "/a\\x5cx0a"  # the path's own text, not a newline
    assert printable("/plain/path?q=1") == "/plain/path?q=1"


@pytest.mark.slow
def test_no_session_id_password_or_secret_in_the_process_output(
    users_file: Path, redis_server: RedisServer, redis_db: redis.Redis
) -> None:
    """A real production process, every logger included, during a login/use/logout cycle."""
    server = Campus(production_env(redis_server.url, users_file))
    try:
        login = {"email": "ann@campus.test", "password": PASSWORD}
        assert server.request("/login", login)[0] == 200
        cookie = server.cookie
        assert server.request(f"/api/me?password={quote(PASSWORD)}")[0] == 200
        assert server.request("/logout")[0] == 200
        server.cookie = cookie  # replay the dead cookie: still nothing of it in the logs
        assert server.request("/api/me")[0] == 401
        wrong = {"email": "ann@campus.test", "password": WRONG}
        assert server.request("/login", wrong)[0] == 403
    finally:
        output = server.stop()
    session_id = decode_signed_value(SECRET, "campus.sid", cookie)
    assert session_id is not None
    for secret in (cookie, session_id.decode(), PASSWORD, quote(PASSWORD), WRONG, SECRET):
        assert secret not in output
    access = [line for line in output.splitlines() if "campus.access" in line]
    assert len(access) == 1 + 5  # the start-up health check, then our five requests


@pytest.mark.parametrize("kind", ["text", "json"])
@pytest.mark.parametrize(("level", "request_id"), [(20, "a1b2"), (30, None)])
def test_the_direct_line_is_the_line_logging_would_write(
    kind: str, level: int, request_id: str | None
) -> None:
    """A running campus hands access lines to its writer without a LogRecord: the line must
    be the very one the record would have made (text and JSON alike)."""
    from campus.observability.accesslog import AccessRecord
    from campus.observability.logs import formatter

    fields = {
        "method": "GET",
        "path": "/api/\\x0a?",
        "status": 503,
        "duration_ms": 12.3,
        "client": "198.51.100.7",
    }
    args = (fields["client"], fields["method"], fields["path"], fields["status"], 12.3)
    record = AccessRecord(level, args, request_id, fields)
    record.created = 1_764_590_000.25
    chosen = formatter(kind)
    assert chosen.access(level, record.created, request_id, fields) == chosen.format(record)  # type: ignore[attr-defined]

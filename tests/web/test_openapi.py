"""docs/openapi.yaml holds: schemathesis generates requests from it against a live campus,
signed in and not, and every answer must be documented (status, headers, body schema,
content type) and none a 5xx.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.support.apps import PASSWORD
from tests.support.servers import REPO, Campus, campus_env

SCHEMA = REPO / "docs" / "openapi.yaml"


def test_the_document_is_openapi_3_1_and_names_every_route() -> None:
    document = yaml.safe_load(SCHEMA.read_text())
    assert document["openapi"].startswith("3.1")
    paths = set(document["paths"])
    assert {"/login", "/logout", "/api/me", "/api/sessions", "/api/sessions/{handle}"} <= paths
    assert {"/api/sessions/end-others", "/healthz", "/metrics", "/{path}"} <= paths
    assert {"/api/device-binding/register", "/api/device-binding/refresh"} <= paths


@pytest.fixture
def campus(users_file: Path) -> Iterator[Campus]:
    server = Campus(campus_env(CAMPUS_USERS_FILE=str(users_file), CAMPUS_LOGIN_MAX_FAILURES="3"))
    yield server
    log = server.stop()
    assert "Traceback" not in log


@pytest.mark.parametrize("signed_in", [False, True])
def test_every_answer_matches_the_document(campus: Campus, tmp_path: Path, signed_in: bool) -> None:
    headers: list[str] = []
    if signed_in:
        status, _, _ = campus.request("/login", {"email": "ann@campus.test", "password": PASSWORD})
        assert status == 200
        headers = ["-H", f"Cookie: campus.sid={campus.cookie}"]
    report = tmp_path / "report"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "run",
            str(SCHEMA),
            "--url",
            f"http://127.0.0.1:{campus.port}",
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,"
            "response_headers_conformance,response_schema_conformance",
            "--phases",
            "examples,coverage,fuzzing",
            # A number of cases, not a time budget: on a loaded machine a budget of seconds
            # was spent before the first case (an empty run).
            "--max-examples",
            "15",
            "--workers",
            "1",
            "--request-timeout",
            "5",
            "--report",
            "ndjson",
            "--report-dir",
            str(report),
            *headers,
        ],
        capture_output=True,
        text=True,
        timeout=180,
        env=campus_env(NO_COLOR="1", SCHEMATHESIS_HOOKS=""),
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "No issues found" in done.stdout or " passed" in done.stdout, done.stdout[-3000:]
    sent = _requests_sent(report)
    assert sent >= 100, f"schemathesis sent only {sent} requests"


def _requests_sent(report: Path) -> int:
    count = 0
    for path in report.glob("*.ndjson"):
        for line in path.read_text().splitlines():
            event = json.loads(line)
            count += line.count('"request"') if isinstance(event, dict) else 0
    return count

"""SECURITY.md's Redis ACL is enough for campus, and no more than it needs.

The ACL line is read from SECURITY.md itself, so the advice cannot drift from the code: a
production server and the `sessions` commands run through a whole day as that user.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from tests.support.apps import PASSWORD
from tests.support.servers import (
    REPO,
    Campus,
    RedisServer,
    production_env,
    redis_command,
    run_campus,
)

ACL_PASSWORD = "acl-password-for-the-campus-user"


def documented_acl() -> list[str]:
    lines = (REPO / "SECURITY.md").read_text().splitlines()
    (line,) = [line.strip() for line in lines if line.strip().startswith("ACL SETUSER campus ")]
    return line.replace("LONG-RANDOM-PASSWORD", ACL_PASSWORD).split()


def test_campus_works_as_the_documented_acl_user(users_file: Path, tmp_path: Path) -> None:
    server = RedisServer(tmp_path)
    server.start()
    try:
        admin = server.client()
        redis_command(admin, *documented_acl())
        url = f"redis://campus:{ACL_PASSWORD}@127.0.0.1:{server.port}/0"
        env = production_env(url, users_file, CAMPUS_SESSION_SECURE="false")
        campus = Campus(env)
        try:
            ann = {"email": "ann@campus.test", "password": PASSWORD}
            assert campus.request("/healthz")[0] == 200
            assert campus.request("/login", {**ann, "password": "wrong"})[0] == 403
            assert campus.request("/login", ann)[0] == 200  # SCRIPT LOAD, EVALSHA inside
            assert campus.request("/api/me")[0] == 200
            assert campus.request("/api/sessions")[0] == 200  # the index, a pipeline
            assert campus.request("/api/sessions/end-others", {})[2] == {"ended": 0}
            assert campus.request("/logout")[0] == 200
            assert campus.request("/login", ann)[0] == 200
        finally:
            log = campus.stop()
        assert "Traceback" not in log and " 503 " not in log and " 500 " not in log, log

        def cli(*args: str) -> str:
            result = run_campus(env, *args)
            assert result.returncode == 0, result.stderr
            return result.stdout

        assert cli("sessions", "count").strip() == "1"
        assert "revoked 1 session" in cli("sessions", "revoke", "ann@campus.test")

        # ... and the user is confined to campus's keys and commands.
        confined = redis.Redis(
            port=server.port, username="campus", password=ACL_PASSWORD, socket_timeout=2
        )
        with pytest.raises(redis.exceptions.NoPermissionError):
            confined.get("other:key")
        with pytest.raises(redis.exceptions.NoPermissionError):
            confined.flushall()
        with pytest.raises(redis.exceptions.NoPermissionError):
            confined.config_get("*")
    finally:
        server.stop()

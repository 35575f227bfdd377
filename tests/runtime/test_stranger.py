"""campus as a stranger starts it: from another directory, with production settings, with a
store that is down, with a typo in a variable. Every case is a real `python -m campus` process.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from tests.support.apps import PASSWORD
from tests.support.servers import (
    REPO,
    Campus,
    RedisServer,
    campus_env,
    installed_requirements,
    production_env,
    run_campus,
)


def elsewhere(tmp_path: Path, **extra: str) -> dict[str, str]:
    """An environment for a process started outside the checkout (which is then not on the
    path, so this checkout's campus is made importable as an installed one would be)."""
    return campus_env(PYTHONPATH=str(REPO), **extra)


def production_elsewhere(redis_url: str, users_file: Path | str, **extra: str) -> dict[str, str]:
    """:func:`elsewhere`, in production (the suite's secret) on *redis_url* with *users_file*."""
    return production_env(redis_url, users_file, PYTHONPATH=str(REPO), **extra)


def copy_root(tmp_path: Path, *, config: bool) -> Path:
    """A root with static/ and dist/ (and config/ only if asked), outside the checkout."""
    root = tmp_path / "site"
    for name in ("static", "dist", *(["config"] if config else [])):
        shutil.copytree(REPO / name, root / name)
    return root


def run(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_campus(env, *args, cwd=cwd, timeout=60)


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("campus: "), done.stderr
    return lines[0]


@pytest.mark.parametrize("with_config", [True, False])
def test_production_from_another_directory_is_production(
    tmp_path: Path,
    users_file: Path,
    redis_server: RedisServer,
    redis_db: redis.Redis,
    with_config: bool,
) -> None:
    """Redis and a Secure cookie come from production's built-in defaults, file or not."""
    root = copy_root(tmp_path, config=with_config)
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    env = production_elsewhere(redis_server.url, users_file, CAMPUS_ROOT=str(root))
    server = Campus(env, cwd=cwd)
    try:
        assert server.request("/healthz")[2] == {"status": "ok", "store": "redis"}
        status, headers, _ = server.request(
            "/login", {"email": "ann@campus.test", "password": PASSWORD}
        )
        assert status == 200
        assert "Secure" in headers["Set-Cookie"] and "HttpOnly" in headers["Set-Cookie"]
        assert redis_db.dbsize() >= 1  # the session is in Redis, not in the process
        status, headers, body = server.request("/account")
        assert status == 200 and b"<main" in body  # the SPA shell, from the root
    finally:
        log = server.stop()
    assert "Traceback" not in log and "memory store" not in log
    assert list(cwd.iterdir()) == []  # nothing written where it was started


def test_production_refuses_to_start_without_the_spa(
    tmp_path: Path, users_file: Path, redis_server: RedisServer
) -> None:
    root = tmp_path / "empty-root"
    root.mkdir()
    env = production_elsewhere(redis_server.url, users_file)
    line = one_line(run(env, "--root", str(root), cwd=tmp_path))
    assert f"{root}/dist/index.html is missing" in line


def test_development_without_the_spa_starts_and_warns(tmp_path: Path, users_file: Path) -> None:
    root = tmp_path / "empty-root"
    root.mkdir()
    env = elsewhere(tmp_path, CAMPUS_USERS_FILE=str(users_file), CAMPUS_ROOT=str(root))
    server = Campus(env, cwd=tmp_path)
    try:
        assert server.request("/healthz")[0] == 200
        assert server.request("/")[0] == 404
    finally:
        log = server.stop()
    assert f"{root}/dist/index.html is missing" in log and "Traceback" not in log


def test_production_refuses_the_demo_account(tmp_path: Path, redis_server: RedisServer) -> None:
    demo = tmp_path / "users.json"
    shutil.copy(REPO / "config" / "users.dev.json", demo)
    env = production_elsewhere(redis_server.url, demo, CAMPUS_ROOT=str(REPO))
    line = one_line(run(env, cwd=tmp_path))
    assert "demo account" in line and "demo@campus.test" in line and "campus-demo" not in line


def test_production_refuses_a_missing_users_file(tmp_path: Path, redis_server: RedisServer) -> None:
    """A production server nobody can log in to is a mistake, like the demo account."""
    missing = tmp_path / "etc" / "users.json"
    env = production_elsewhere(redis_server.url, missing, CAMPUS_ROOT=str(REPO))
    done = run(env, cwd=tmp_path)
    assert one_line(done) == (
        f"campus: {missing} does not exist: create it with `campus users add EMAIL`"
        " (a file holding [] starts with no users)"
    )
    assert done.returncode == 1 and not missing.parent.exists()


def test_production_with_an_empty_users_file_starts_and_warns(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    empty = tmp_path / "users.json"
    empty.write_text("[]\n")
    server = Campus(production_elsewhere(redis_server.url, empty, CAMPUS_ROOT=str(REPO)))
    try:
        assert server.request("/healthz")[0] == 200
    finally:
        log = server.stop()
    assert f"no users in {empty}: add one with `campus users add EMAIL`" in log
    assert "Traceback" not in log


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("CAMPUS_SESION_SECRET", "x", "CAMPUS_SESION_SECRET: unknown setting"),
        ("CAMPUS_REDIS_URL", "redis://127.0.0.1:99999/0", "port out of range"),
        ("CAMPUS_REDIS_URL", "redis://[::1", "bad IPv6 address"),
    ],
)
def test_a_mistake_in_the_environment_is_one_line(
    tmp_path: Path, variable: str, value: str, expected: str
) -> None:
    done = run(elsewhere(tmp_path, CAMPUS_STORE="redis", **{variable: value}), cwd=REPO)
    assert expected in one_line(done).lower() or expected in one_line(done)
    assert done.returncode == 2


def test_redis_down_at_startup_is_one_warning_and_recovers(
    tmp_path: Path, users_file: Path
) -> None:
    later = RedisServer(tmp_path / "redis")
    (tmp_path / "redis").mkdir()
    env = campus_env(
        CAMPUS_STORE="redis",
        CAMPUS_REDIS_URL=later.url,
        CAMPUS_REDIS_TIMEOUT="0.3",
        CAMPUS_USERS_FILE=str(users_file),
    )
    server = Campus(env)
    try:
        assert server.request("/healthz")[0] == 503
        login = {"email": "ann@campus.test", "password": PASSWORD}
        assert server.request("/login", login)[0] == 503
        later.start()
        deadline = time.monotonic() + 10
        while server.request("/healthz")[0] != 200:
            assert time.monotonic() < deadline, "no recovery without a restart"
            time.sleep(0.1)
        assert server.request("/login", login)[0] == 200
    finally:
        log = server.stop()
        later.stop()
    warnings = [line for line in log.splitlines() if "does not answer" in line]
    assert len(warnings) == 1 and "Traceback" not in log


def test_sessions_count_in_production_needs_no_secret(
    tmp_path: Path, redis_server: RedisServer, redis_db: redis.Redis
) -> None:
    env = elsewhere(tmp_path, CAMPUS_ENV="production", CAMPUS_REDIS_URL=redis_server.url)
    done = run(env, "sessions", "count", "--root", str(REPO), cwd=tmp_path)
    assert (done.returncode, done.stdout, done.stderr) == (0, "0\n", "")


def test_users_add_from_another_directory_writes_under_the_root(tmp_path: Path) -> None:
    root = copy_root(tmp_path, config=True)
    (root / "config" / "users.dev.json").unlink()
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "campus", "users", "add", "ann@example.edu", "--password-stdin"],
        cwd=cwd,
        env=elsewhere(tmp_path, CAMPUS_ROOT=str(root)),
        input="mauve-lantern-orbit-42\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert (root / "config" / "users.dev.json").exists()
    assert list(cwd.iterdir()) == []  # no stray config/ where it was run


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `campus` command of this checkout installed into a new virtualenv. Its runtime
    dependencies are the suite's own (installed_requirements: no download); campus itself
    comes from the venv only, the checkout is not on its path."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    purelib = venv / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
    (purelib / "suite_requirements.pth").write_text(
        installed_requirements().replace(os.pathsep, "\n") + "\n"
    )
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    subprocess.run(
        [*pip, "--no-deps", "--disable-pip-version-check", str(REPO)],
        check=True,
        cwd=tmp_path_factory.mktemp("build"),
        timeout=300,
    )
    return venv / "bin" / "campus"


def test_the_installed_command_serves_a_root_from_anywhere(tmp_path: Path, installed: Path) -> None:
    env = campus_env()  # no PYTHONPATH: the installed package only
    version = subprocess.run(
        [str(installed), "--version"], env=env, capture_output=True, text=True, check=True
    )
    assert version.stdout.startswith("campus ")
    server = Campus(env, cwd=tmp_path, command=[str(installed), "--root", str(REPO)])
    try:
        for path in ("/", "/account", "/login"):
            status, _, body = server.request(path)
            assert status == 200 and b"<main" in body, path
        demo = {"email": "demo@campus.test", "password": "campus-demo"}
        assert server.request("/login", demo)[0] == 200
        assert server.request("/api/me")[2]["user"]["email"] == "demo@campus.test"
    finally:
        log = server.stop()
    assert "Traceback" not in log and list(tmp_path.iterdir()) == []

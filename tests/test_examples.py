"""The examples in examples/ run for real, and the built wheel runs them from a fresh virtualenv.

Each example is started as its own process on a free port and driven by a real HTTP client
that keeps cookies the way a browser does, so the examples cannot rot unnoticed.
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import shutil
import subprocess
import sys
import tarfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis

from campus.session import __version__
from tests.support.servers import REPO, RedisServer, free_port

EXAMPLES = REPO / "examples"
#: What `pip install campus` installs: the library and its dependencies, nothing of the server
#: (redis-py adds async-timeout on Pythons before 3.11.3, such as Debian 12's).
LIBRARY_ALONE = sorted(
    ["campus", "hiredis", "orjson", "redis", "tornado"]
    + (["async-timeout"] if sys.version_info < (3, 11, 3) else [])
)


@contextmanager
def serving(
    python: str,
    script: Path,
    *,
    cwd: Path,
    path: Path | None = None,
    env: dict[str, str] | None = None,
    exits: list[int] | None = None,
) -> Iterator[str]:
    """Run an example on a free port; yields its base URL once it says it listens.

    ``path``: where ``campus`` is imported from (None: wherever *python* finds it). ``env``:
    variables on top of this process's. ``exits`` gets the exit status after SIGTERM.
    """
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | (env or {})
    if path is not None:
        environment["PYTHONPATH"] = str(path)
    process = subprocess.Popen(
        [python, str(script), str(port)],
        cwd=cwd,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # the example prints one line once it listens
        if "listening" not in line:
            process.kill()
            _, stderr = process.communicate(timeout=10)
            pytest.fail(f"{script.name} did not start: {line}{stderr}")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=10)
        if exits is not None:
            exits.append(process.returncode)
            assert "Traceback" not in stderr, stderr


class Browser:
    """urllib with a cookie jar: cookies come and go as a browser's would."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def call(self, method: str, path: str, form: dict[str, str] | None = None) -> tuple[int, Any]:
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        if data is None and method in ("POST", "PUT"):
            data = b""
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        try:
            with self.opener.open(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, None

    def cookies(self) -> list[str]:
        return [cookie.name for cookie in self.jar]


def check_cart(base_url: str) -> None:
    shopper, stranger = Browser(base_url), Browser(base_url)
    assert shopper.call("GET", "/cart") == (200, {"cart": []})
    assert shopper.cookies() == []  # an untouched session sets no cookie
    shopper.call("POST", "/cart?item=book")
    assert shopper.call("POST", "/cart?item=pen") == (200, {"cart": ["book", "pen"]})
    assert shopper.cookies() == ["campus.sid"]
    assert shopper.call("GET", "/cart") == (200, {"cart": ["book", "pen"]})
    assert stranger.call("GET", "/cart") == (200, {"cart": []})
    assert shopper.call("DELETE", "/cart") == (200, {"cart": []})
    assert shopper.call("GET", "/cart") == (200, {"cart": []})


def test_the_cart_example_keeps_a_cart_per_visitor() -> None:
    with serving(sys.executable, EXAMPLES / "cart.py", cwd=REPO, path=REPO) as base_url:
        check_cart(base_url)


def test_the_login_example_signs_in_and_out() -> None:
    with serving(sys.executable, EXAMPLES / "login.py", cwd=REPO, path=REPO) as base_url:
        ann = Browser(base_url)
        assert ann.call("GET", "/signin") == (401, None)
        wrong = {"email": "ann@example.com", "password": "wrong"}
        assert ann.call("POST", "/signin", wrong) == (403, None)
        assert ann.cookies() == []
        right = {"email": "ann@example.com", "password": "correct horse battery"}
        user = {"user": {"email": "ann@example.com", "name": "Ann"}}
        assert ann.call("POST", "/signin", right) == (200, user)
        assert ann.call("GET", "/signin") == (200, user)
        assert ann.call("DELETE", "/signin") == (200, {})
        assert ann.cookies() == []  # expired by the server
        assert ann.call("GET", "/signin") == (401, None)


def visits(
    redis_url: str | None, tmp_path: Path, secret: str = "visits-secret-" * 4
) -> tuple[Any, list[int]]:
    """Two runs of examples/visits.py, one browser: its first answer after the restart, and
    the exit status of each run."""
    env = {"SESSION_SECRET": secret} | ({"REDIS_URL": redis_url} if redis_url else {})
    exits: list[int] = []
    script = EXAMPLES / "visits.py"
    with serving(sys.executable, script, cwd=tmp_path, path=REPO, env=env, exits=exits) as url:
        ann = Browser(url)
        assert ann.call("GET", "/") == (200, {"visits": 1, "name": None})
        assert ann.call("POST", "/name", {"name": "Ann"}) == (200, {"name": "Ann"})
        assert ann.call("GET", "/") == (200, {"visits": 2, "name": "Ann"})
        assert Browser(url).call("GET", "/") == (200, {"visits": 1, "name": None})
    with serving(sys.executable, script, cwd=tmp_path, path=REPO, env=env, exits=exits) as url:
        ann.base_url = url  # the same cookie, to the process started again
        after_restart = ann.call("GET", "/")
        assert ann.call("POST", "/forget", {}) == (200, {})
        assert ann.cookies() == []
        assert ann.call("GET", "/") == (200, {"visits": 1, "name": None})
    return after_restart, exits


def test_the_visits_example_in_memory_forgets_on_restart(tmp_path: Path) -> None:
    after_restart, exits = visits(None, tmp_path)
    assert after_restart == (200, {"visits": 1, "name": None})  # that process's memory is gone
    assert exits == [0, 0]  # SIGTERM: the server stops, the store is closed, no traceback


def test_the_visits_example_in_redis_keeps_sessions_across_restarts(
    tmp_path: Path, redis_server: RedisServer, redis_db: redis.Redis
) -> None:
    after_restart, exits = visits(redis_server.url, tmp_path)
    assert after_restart == (200, {"visits": 3, "name": "Ann"})  # Redis kept it
    assert exits == [0, 0]
    # In Redis, under the example's prefix: the other browser's and Ann's new one, each
    # expiring after the idle timeout; the forgotten one and the one before "name" are gone.
    keys = redis_db.keys("visits:*")
    assert len(keys) == 2 and all(0 < redis_db.ttl(key) <= 1800 for key in keys)


def test_the_examples_import_nothing_of_campus_but_the_session_library() -> None:
    for script in EXAMPLES.glob("*.py"):
        for line in script.read_text().splitlines():
            if line.startswith(("import campus", "from campus")):
                assert line.startswith("from campus.session"), f"{script.name}: {line}"
        # An application under 60 lines; a module of parts (a store) under 100.
        limit = 60 if "__main__" in script.read_text() else 100
        assert len(script.read_text().splitlines()) <= limit, f"{script.name} is too long"


@pytest.mark.packaging
def test_the_wheel_runs_an_example_from_a_fresh_virtualenv(
    tmp_path: Path, redis_server: RedisServer, redis_db: redis.Redis
) -> None:
    """python -m build, a new venv, pip install the wheel, examples run from elsewhere: the
    cart in memory, the visits in Redis.

    The build uses this machine's setuptools (pinned in requirements-dev.txt) rather than an
    isolated one from PyPI, and the venv gets no pip of its own: this test's pip installs into
    it. Both only save time; the wheel's dependencies still come from PyPI (or pip's cache).
    """
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "CHANGELOG.md", "MANIFEST.in"):
        shutil.copy(REPO / name, source / name)
    for tree in ("campus", "examples", "docs"):
        shutil.copytree(REPO / tree, source / tree, ignore=shutil.ignore_patterns("__pycache__"))
    (source / "scripts").mkdir()
    shutil.copy(REPO / "scripts" / "build_backend.py", source / "scripts")  # pyproject names it
    out = tmp_path / "out"
    subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(source)],
        check=True,
        capture_output=True,
        timeout=180,
    )
    wheel = next(out.glob("campus-*.whl"))
    assert wheel.name.startswith(f"campus-{__version__}-")
    with tarfile.open(out / f"campus-{__version__}.tar.gz") as sdist:
        names = sdist.getnames()
    assert f"campus-{__version__}/examples/cart.py" in names
    assert f"campus-{__version__}/campus/session/py.typed" in names
    with zipfile.ZipFile(wheel) as archive:
        assert "campus/session/py.typed" in archive.namelist()

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    install = [sys.executable, "-m", "pip", "--python", python, "install", "-q"]
    install += ["--disable-pip-version-check"]
    # The pinned versions (already in pip's cache) satisfy the wheel's ranges.
    install += ["-c", str(REPO / "requirements.txt"), str(wheel)]
    subprocess.run(install, check=True, capture_output=True, timeout=300)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(EXAMPLES / "cart.py", elsewhere / "cart.py")
    where = subprocess.run(
        [python, "-c", "import campus.session as s; print(s.__file__, s.__version__)"],
        cwd=elsewhere,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert where[0].startswith(str(venv)) and where[1] == __version__
    # The library alone: none of the server's packages came with it.
    listed = subprocess.run(
        [
            python,
            "-c",
            "import importlib.metadata as m; print(*(d.name for d in m.distributions()))",
        ],
        cwd=elsewhere,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert sorted(name.lower().replace("_", "-") for name in listed) == LIBRARY_ALONE
    # ... and its `campus` command says in one line what the server needs.
    command = subprocess.run([venv / "bin" / "campus"], capture_output=True, text=True)
    assert command.returncode == 1 and command.stderr.count("\n") == 1, command.stderr
    assert "pip install 'campus[server]'" in command.stderr
    with serving(python, elsewhere / "cart.py", cwd=elsewhere) as base_url:
        check_cart(base_url)
    shutil.copy(EXAMPLES / "visits.py", elsewhere / "visits.py")
    exits: list[int] = []
    redis_env = {"REDIS_URL": redis_server.url}
    with serving(python, elsewhere / "visits.py", cwd=elsewhere, env=redis_env, exits=exits) as url:
        assert Browser(url).call("GET", "/") == (200, {"visits": 1, "name": None})
    assert exits == [0] and len(redis_db.keys("visits:*")) == 1
    # The installed package's types reach an application's mypy (py.typed): no import-untyped,
    # no "cannot subclass SessionMixin (has type Any)".
    mypy = [sys.executable, "-m", "mypy", "--strict", "--python-executable", python]
    mypy += ["--cache-dir", str(tmp_path / "mypy-cache"), "cart.py", "visits.py"]
    checked = subprocess.run(mypy, cwd=elsewhere, capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0, checked.stdout

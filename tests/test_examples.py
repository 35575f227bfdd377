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

from campus.session import __version__
from tests.support.servers import REPO, free_port

EXAMPLES = REPO / "examples"
#: What `pip install campus` installs: the library and its dependencies, nothing of the server.
LIBRARY_ALONE = ["campus", "hiredis", "orjson", "redis", "tornado"]


@contextmanager
def serving(python: str, script: Path, *, cwd: Path, path: Path | None = None) -> Iterator[str]:
    """Run an example on a free port; yields its base URL once it says it listens.

    ``path``: where ``campus`` is imported from (None: wherever *python* finds it).
    """
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if path is not None:
        env["PYTHONPATH"] = str(path)
    process = subprocess.Popen(
        [python, str(script), str(port)],
        cwd=cwd,
        env=env,
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
        process.communicate(timeout=10)


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


def test_the_examples_import_nothing_of_campus_but_the_session_library() -> None:
    for script in EXAMPLES.glob("*.py"):
        for line in script.read_text().splitlines():
            if line.startswith(("import campus", "from campus")):
                assert line.startswith("from campus.session"), f"{script.name}: {line}"
        # An application under 60 lines; a module of parts (a store) under 100.
        limit = 60 if "__main__" in script.read_text() else 100
        assert len(script.read_text().splitlines()) <= limit, f"{script.name} is too long"


@pytest.mark.packaging
def test_the_wheel_runs_an_example_from_a_fresh_virtualenv(tmp_path: Path) -> None:
    """python -m build, a new venv, pip install the wheel, an example run from elsewhere.

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
    assert sorted(name.lower() for name in listed) == LIBRARY_ALONE
    # ... and its `campus` command says in one line what the server needs.
    command = subprocess.run([venv / "bin" / "campus"], capture_output=True, text=True)
    assert command.returncode == 1 and command.stderr.count("\n") == 1, command.stderr
    assert "pip install 'campus[server]'" in command.stderr
    with serving(python, elsewhere / "cart.py", cwd=elsewhere) as base_url:
        check_cart(base_url)
    # The installed package's types reach an application's mypy (py.typed): no import-untyped,
    # no "cannot subclass SessionMixin (has type Any)".
    mypy = [sys.executable, "-m", "mypy", "--strict", "--python-executable", python]
    mypy += ["--cache-dir", str(tmp_path / "mypy-cache"), "cart.py"]
    checked = subprocess.run(mypy, cwd=elsewhere, capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0, checked.stdout

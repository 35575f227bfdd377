"""How campus installs: the library alone, the server with its extra, packages built aside.

- ``pip install campus`` brings campus.session's dependencies only; the server's come with
  ``campus[server]``, and requirements.txt pins every one of them.
- The ``campus`` command without the server's packages says what to install in one line.
- Building never writes into dist/, the SPA's folder the server hands out.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from tests.support.isolated import run_with, site_with
from tests.support.servers import REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def names(requirements: list[str]) -> set[str]:
    """Distribution names, normalised (PEP 503), without extras, versions or markers."""
    return {
        re.split(r"[\[<>=!~;\s]", line, maxsplit=1)[0].lower().replace("_", "-")
        for line in requirements
    }


def pinned() -> set[str]:
    lines = (REPO / "requirements.txt").read_text().splitlines()
    return names([line for line in lines if line.strip() and not line.startswith("#")])


def test_the_library_depends_on_tornado_and_redis_only() -> None:
    assert names(PYPROJECT["project"]["dependencies"]) == {"tornado", "redis", "orjson"}
    assert "redis[hiredis]" in " ".join(PYPROJECT["project"]["dependencies"])


def imported_distributions(package: Path) -> set[str]:
    """The distributions whose modules *package*'s code imports (lazy imports included)."""
    modules = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules |= {alias.name.partition(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.partition(".")[0])
    modules -= {*sys.stdlib_module_names, "campus"}
    owners = importlib.metadata.packages_distributions()
    return names([owner for module in modules for owner in owners[module]])


def test_what_the_code_imports_is_declared_and_pinned() -> None:
    # hiredis comes with redis[hiredis]; pytest only runs campus.session.contract's tests.
    library = names(PYPROJECT["project"]["dependencies"]) | {"hiredis", "pytest"}
    server = names(PYPROJECT["project"]["optional-dependencies"]["server"])
    assert imported_distributions(REPO / "campus" / "session") <= library
    assert imported_distributions(REPO / "campus") <= library | server
    runtime = (library - {"pytest"}) | server
    assert runtime <= pinned(), runtime - pinned()


def test_the_campus_command_without_the_servers_packages_says_what_to_install(
    tmp_path: Path,
) -> None:
    """What `pip install campus` (the library alone) leaves: tornado, redis, hiredis, orjson."""
    site = site_with(tmp_path / "site", "tornado", "redis", "hiredis", "orjson")
    command = "import runpy; runpy.run_module('campus', run_name='__main__', alter_sys=True)"
    for args in ((), ("--help",), ("users", "list")):
        done = run_with(site, command, *args)
        assert done.returncode == 1, (args, done.stdout, done.stderr)
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
        assert done.stderr.startswith("campus: the server needs packages that are not installed")
        assert "pip install 'campus[server]'" in done.stderr


def test_the_campus_command_is_the_one_that_says_so() -> None:
    assert PYPROJECT["project"]["scripts"] == {"campus": "campus.__main__:run"}


def test_building_into_the_spa_folder_is_refused(tmp_path: Path) -> None:
    """`python -m build` without --outdir would write the wheel and sdist into dist/."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "MANIFEST.in", "CHANGELOG.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(
        REPO / "campus", source / "campus", ignore=shutil.ignore_patterns("__pycache__")
    )
    (source / "scripts").mkdir()
    shutil.copy(REPO / "scripts" / "build_backend.py", source / "scripts")
    (source / "dist").mkdir()
    (source / "dist" / "index.html").write_text("<!doctype html><title>the SPA</title>")
    for kind in ("--sdist", "--wheel"):
        done = subprocess.run(
            [sys.executable, "-m", "build", "--no-isolation", kind, str(source)],
            cwd=source,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode != 0
        assert "dist/ holds the single-page app" in done.stdout + done.stderr
        assert "python -m build --outdir build/packages" in done.stdout + done.stderr
    assert sorted(p.name for p in (source / "dist").iterdir()) == ["index.html"]

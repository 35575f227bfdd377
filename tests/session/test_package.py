"""campus.session as a library: its version, its types, and its independence from campus."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import campus.session
from campus.session import CookiePolicy, SessionManager
from campus.session.stores.memory import MemoryStore
from tests.support.servers import REPO

PACKAGE = Path(campus.session.__file__).parent


def test_the_version_is_the_one_in_pyproject() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert campus.session.__version__ == pyproject["project"]["version"]


def test_the_changelog_has_an_entry_for_this_version() -> None:
    assert f"## [{campus.session.__version__}]" in (REPO / "CHANGELOG.md").read_text()


def test_the_package_ships_its_types() -> None:
    assert (PACKAGE / "py.typed").is_file()


def test_the_session_package_imports_nothing_else_of_campus() -> None:
    for module in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                if name == "campus" or name.startswith("campus."):
                    assert name.startswith("campus.session"), f"{module.name} imports {name}"


def test_one_line_builds_a_manager_with_coherent_defaults() -> None:
    manager = SessionManager(MemoryStore(max_sessions=10), secrets="s" * 32)
    assert manager.policy.idle_timeout == 1800
    assert manager.cookie_max_age == 1800  # follows the idle timeout
    shorter = SessionManager(MemoryStore(max_sessions=10), secrets=["s" * 32], idle_timeout=600)
    assert shorter.cookie_max_age == 600
    explicit = SessionManager(
        MemoryStore(max_sessions=10), secrets=["s" * 32], cookie=CookiePolicy(max_age=60)
    )
    assert explicit.cookie_max_age == 60

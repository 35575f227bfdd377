"""campus.session as a library: its version, its types, and its independence from campus."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import campus.session
from campus.session import CookiePolicy, SessionManager
from campus.session.stores.memory import MemoryStore
from tests.support.isolated import run_with, site_with
from tests.support.servers import REPO, RedisServer

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


# -- installed alone ------------------------------------------------------------------------

A_REQUEST = """
import asyncio
import tornado.web
from tornado.httpclient import AsyncHTTPClient
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port
from campus.session import SessionManager, SessionMixin
from campus.session.stores.memory import MemoryStore
import campus.session.contract  # the contract imports without pytest

class Count(SessionMixin, tornado.web.RequestHandler):
    def get(self) -> None:
        self.session["n"] = self.session.get("n", 0) + 1
        self.write(str(self.session["n"]))

async def main() -> None:
    sessions = SessionManager(MemoryStore(max_sessions=10), secrets="s" * 32)
    sock, port = bind_unused_port()
    app = tornado.web.Application([("/", Count)], session_manager=sessions)
    HTTPServer(app).add_sockets([sock])
    client, cookie = AsyncHTTPClient(), ""
    for _ in range(2):
        reply = await client.fetch(f"http://127.0.0.1:{port}/", headers={"Cookie": cookie})
        cookie = reply.headers.get("Set-Cookie", cookie).split(";")[0]
    print(reply.body.decode())

asyncio.run(main())
"""


def test_the_library_runs_with_tornado_alone(tmp_path: Path) -> None:
    """No redis, orjson, hiredis nor pytest: sessions in memory still work, end to end."""
    done = run_with(site_with(tmp_path / "site", "tornado"), A_REQUEST)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["2", "['tornado']"]


A_REDIS_ROUND_TRIP = """
import asyncio, sys
from campus.session.store import SessionRecord, encode_values, new_session_id
from campus.session.stores.redis import RedisStore

async def main() -> None:
    store = RedisStore.from_url(sys.argv[1], prefix="nohiredis:")
    sid = new_session_id()
    await store.ping()
    await store.create(sid, SessionRecord(encode_values({"a": 1}), 2**40), ttl=60)
    assert await store.update(sid, encode_values({"b": [2]}), ["a"], ttl=60, user=None)
    record = await store.load(sid, touch=60)
    await store.delete(sid)
    print(record.decoded(), await store.load(sid, touch=None))
    await store.close()

asyncio.run(main())
"""


def test_the_redis_store_runs_without_hiredis(tmp_path: Path, redis_server: RedisServer) -> None:
    """hiredis is a dependency, but an application's lock file may lack it: redis-py's own
    parser and packer take over (reads included, which pack their commands themselves)."""
    site = site_with(tmp_path / "site", "tornado", "redis")
    done = run_with(site, A_REDIS_ROUND_TRIP, redis_server.url)
    assert done.returncode == 0, done.stderr
    answer, loaded = done.stdout.splitlines()
    assert answer == "{'b': [2]} None"
    modules = ast.literal_eval(loaded)
    assert "redis" in modules and "hiredis" not in modules  # redis-py and what it requires


def test_every_test_the_docs_table_names_exists() -> None:
    """The table of ways a handler can end cites its tests; none may be renamed away."""
    docs = (REPO / "docs" / "session-library.md").read_text()
    table = docs[docs.index("## Every way a handler can end") : docs.index("## The cookie")]
    cited = set(re.findall(r"`(test_\w+)`", table))
    tests = (REPO / "tests" / "session" / "test_lifecycle.py").read_text()
    defined = set(re.findall(r"^async def (test_\w+)", tests, flags=re.MULTILINE))
    assert len(cited) > 20 and cited <= defined, cited - defined

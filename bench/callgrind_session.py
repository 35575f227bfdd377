"""Instructions per read-only request, in process: campus's ``GET /api/me`` and a bare handler.

No sockets and no client: each request is a Tornado ``HTTPServerRequest`` on a stub connection
handed to the Application, so what is counted is routing, the handler and the session layer.
Run under callgrind twice with different counts; the difference divided by the extra requests
is the cost of one request, free of start-up:

    PY=$(python3 -c 'import sys; print(sys.executable)')   # the real binary, not a shim
    for n in 200 1200; do
      PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        $PY bench/callgrind_session.py $n campus 2>&1 | grep -E 'Collected'
    done

Fix ``PYTHONHASHSEED``: without it, two runs of the same code once differed by a third per
request; with it, repeated runs agree within 0.3%. The second argument picks the app:
``campus`` (its ``GET /api/me``), ``bare`` (a ``SessionMixin`` on a plain ``RequestHandler``)
or ``both``. Point ``PYTHONPATH`` at another checkout to measure its session layer instead.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import tornado.web
from tornado.concurrent import Future
from tornado.httputil import HTTPHeaders, HTTPServerRequest, RequestStartLine, ResponseStartLine

import campus
from campus.accounts.users import UserDirectory
from campus.config import Config, UsersConfig
from campus.session import SessionMixin
from campus.session.store import SessionRecord, new_session_id
from campus.session.stores.memory import MemoryStore
from campus.web.app import make_app
from campus.web.services import Services, build_sessions

#: The checkout whose campus is imported (PYTHONPATH may point at another one).
ROOT = Path(campus.__file__).resolve().parent.parent


class StubConnection:
    """Just enough of an HTTP/1 connection for a handler to answer into."""

    def __init__(self) -> None:
        self.status = 0
        self.finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def set_close_callback(self, callback: Any) -> None:
        pass

    def write_headers(
        self, start_line: ResponseStartLine, headers: HTTPHeaders, chunk: bytes | None = None
    ) -> Future[None]:
        self.status = start_line.code
        done: Future[None] = Future()
        done.set_result(None)
        return done

    def write(self, chunk: bytes) -> Future[None]:
        done: Future[None] = Future()
        done.set_result(None)
        return done

    def finish(self) -> None:
        self.finished.set_result(None)


class BareHandler(SessionMixin, tornado.web.RequestHandler):
    def get(self) -> None:
        self.write({"user": self.session.get("user")})


async def main(count: int, which: str) -> None:
    config = Config(users=UsersConfig(file=str(ROOT / "config" / "users.dev.json")))
    store = MemoryStore(max_sessions=1000)
    sessions = build_sessions(config, store)
    services = Services(
        config=config, sessions=sessions, users=UserDirectory.load(config.users.file)
    )
    campus_app = make_app(services, root=str(ROOT), log_function=lambda handler: None)
    bare_app = tornado.web.Application(
        [(r"/api/me", BareHandler)], session_manager=sessions, log_function=lambda handler: None
    )
    sid = new_session_id()
    user = '{"email":"demo@campus.test","name":"Demo"}'
    record = SessionRecord({"user": user}, int(time.time()) + 28800, "demo@campus.test")
    await store.create(sid, record, ttl=1800)
    cookie = "campus.sid=" + sessions.signer.sign("campus.sid", sid)

    for app in {"campus": [campus_app], "bare": [bare_app], "both": [campus_app, bare_app]}[which]:
        for _ in range(count):
            connection = StubConnection()
            headers = HTTPHeaders({"Host": "127.0.0.1", "Cookie": cookie})
            request = HTTPServerRequest(
                connection=connection,  # type: ignore[arg-type]
                start_line=RequestStartLine("GET", "/api/me", "HTTP/1.1"),
                headers=headers,
            )
            app(request)
            await connection.finished
            if connection.status != 200:
                raise SystemExit(f"unexpected status {connection.status}")


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    asyncio.run(main(count, sys.argv[2] if len(sys.argv) > 2 else "both"))

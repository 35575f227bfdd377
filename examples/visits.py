"""Visits and a name per visitor, in server-side sessions: ``python examples/visits.py [PORT]``.

Sessions live in this process's memory; with REDIS_URL set (redis://localhost:6379/0,
redis+sentinel://..., redis+cluster://...) they live in Redis, shared by every process and
kept across restarts. GET / counts a visit, POST /name with name=Ann remembers a name (under a
new session id), POST /forget ends the session. SESSION_SECRET keeps cookies valid across
restarts.
"""

import asyncio
import os
import secrets
import signal
import sys

import tornado.web

from campus.session import SessionManager, SessionMixin, SessionStore
from campus.session.stores.memory import MemoryStore
from campus.session.stores.redis import RedisStore


class Visits(SessionMixin, tornado.web.RequestHandler):
    def get(self) -> None:
        self.session["visits"] = self.session.get("visits", 0) + 1
        self.write({"visits": self.session["visits"], "name": self.session.get("name")})


class Name(SessionMixin, tornado.web.RequestHandler):
    def post(self) -> None:
        self.session.regenerate()  # a new id whenever who the visitor is changes
        self.session["name"] = self.get_body_argument("name")
        self.write({"name": self.session["name"]})


class Forget(SessionMixin, tornado.web.RequestHandler):
    def post(self) -> None:
        self.session.destroy()  # the record deleted, the cookie expired
        self.write({})


async def main(port: int) -> None:
    url = os.environ.get("REDIS_URL")
    store: SessionStore
    store = RedisStore.from_url(url, prefix="visits:") if url else MemoryStore(max_sessions=10_000)
    secret = os.environ.get("SESSION_SECRET") or secrets.token_urlsafe(32)
    sessions = SessionManager(store, secrets=secret)
    routes = [(r"/", Visits), (r"/name", Name), (r"/forget", Forget)]
    server = tornado.web.Application(routes, session_manager=sessions).listen(port, "127.0.0.1")
    print(f"visits: listening on http://127.0.0.1:{port}/ ({store.name})", flush=True)
    stopping = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
    await stopping.wait()
    server.stop()
    await store.close()  # Redis: its connections; memory: its records


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 8888))

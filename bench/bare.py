"""The ceiling: bare Tornado answering GET /api/me with the same JSON, and no session at all.

It logs each request the way campus does, so the comparison isolates the session layer.
"""

from __future__ import annotations

import asyncio
import sys

import tornado.web

from campus.server import configure_logging

USER = {"user": {"email": "demo@campus.test", "name": "Demo Student", "roles": ["student"]}}


class MeHandler(tornado.web.RequestHandler):
    def get(self) -> None:
        self.set_header("Cache-Control", "no-store")
        self.write(USER)


async def main(port: int) -> None:
    configure_logging()
    app = tornado.web.Application([(r"/api/me", MeHandler)])
    app.listen(port, "127.0.0.1")
    print("listening", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))

"""The ceiling: bare Tornado answering GET /api/me with the same JSON, no session, no logging.

    python bench/bare.py PORT

Nothing per request but Tornado itself: no access log (Tornado logs a request only through the
``tornado.access`` logger, which has no handler here and is set above INFO), so every cost
campus adds on top — the session layer, its handler stack and its access log — shows in the
ratios.
"""

from __future__ import annotations

import asyncio
import logging
import sys

import tornado.web

USER = {"user": {"email": "demo@campus.test", "name": "Demo Student", "roles": ["student"]}}


class MeHandler(tornado.web.RequestHandler):
    def get(self) -> None:
        self.set_header("Cache-Control", "no-store")
        self.write(USER)


def no_log(handler: tornado.web.RequestHandler) -> None:
    """Application ``log_function``: nothing (not even the level check Tornado's default makes)."""


async def main(port: int) -> None:
    logging.getLogger("tornado.access").setLevel(logging.WARNING)
    app = tornado.web.Application([(r"/api/me", MeHandler)], log_function=no_log)
    app.listen(port, "127.0.0.1")
    print("listening", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))

"""A shopping cart in a server-side session: ``python examples/cart.py [PORT]``.

GET /cart shows the cart, POST /cart?item=NAME adds an item, DELETE /cart empties it. The
cookie carries only a signed random id; the cart lives in the store.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sys

import tornado.web

from campus.session import SessionManager, SessionMixin
from campus.session.stores.memory import MemoryStore


class CartHandler(SessionMixin, tornado.web.RequestHandler):
    def get(self) -> None:
        self.write({"cart": self.session.get("cart", [])})

    def post(self) -> None:
        # A new list, or an append in place: either is stored before the response leaves.
        self.session.setdefault("cart", []).append(self.get_argument("item"))
        self.write({"cart": self.session["cart"]})

    def delete(self) -> None:
        self.session.pop("cart", None)
        self.write({"cart": []})


def make_app() -> tornado.web.Application:
    # SESSION_SECRET keeps cookies valid across restarts (a memory store does not, though).
    secret = os.environ.get("SESSION_SECRET") or secrets.token_urlsafe(32)
    sessions = SessionManager(MemoryStore(max_sessions=10_000), secrets=[secret])
    return tornado.web.Application([(r"/cart", CartHandler)], session_manager=sessions)


async def main(port: int) -> None:
    make_app().listen(port, "127.0.0.1")
    print(f"cart: listening on http://127.0.0.1:{port}/cart", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 8888))

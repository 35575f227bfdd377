"""A peer: the same two routes on aiohttp with aiohttp-session's Redis storage (redis-py).

    bench/.venv/bin/python bench/aiohttp_app.py PORT REDIS_URL

Runs in the bench's own virtualenv (bench/requirements.txt), never campus's Python. It is what
a user would write with that stack, and nothing more: a read-only request costs one Redis
command (GET; aiohttp-session writes only a session that changed and pushes no idle expiry).
Like the Express app, it logs no requests (aiohttp logs none until logging is configured).
"""

from __future__ import annotations

import sys

import redis.asyncio
from aiohttp import web
from aiohttp_session import get_session, setup
from aiohttp_session.redis_storage import RedisStorage

USERS = {
    "demo@campus.test": {
        "email": "demo@campus.test",
        "name": "Demo Student",
        "roles": ["student"],
        "password": "campus-demo",
    }
}


async def login(request: web.Request) -> web.Response:
    body = await request.json()
    user = USERS.get(body.get("email"))
    if user is None or user["password"] != body.get("password"):
        return web.json_response({"errorMessage": "Permission denied!"}, status=403)
    session = await get_session(request)
    session["user"] = {k: v for k, v in user.items() if k != "password"}
    return web.json_response({"user": session["user"]})


async def me(request: web.Request) -> web.Response:
    session = await get_session(request)
    if "user" not in session:
        return web.json_response({"errorMessage": "Not logged in"}, status=401)
    return web.json_response({"user": session["user"]})


def main(port: int, redis_url: str) -> None:
    app = web.Application()
    client = redis.asyncio.Redis.from_url(redis_url)
    setup(app, RedisStorage(client, cookie_name="aiohttp.sid", max_age=1800))
    app.router.add_post("/login", login)
    app.router.add_get("/api/me", me)
    web.run_app(app, host="127.0.0.1", port=port, print=lambda *_: print("listening", flush=True))


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])

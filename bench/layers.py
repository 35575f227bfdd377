"""Run campus with one of its layers taken out (`layers.py LAYER --port 8000`): a layer's cost.

For bench/breakdown.py only, never how campus ships. Each layer is removed by the smallest
patch that takes its per-request work away and leaves ``GET /api/me`` answering 200 with the
user, so the difference from the whole of campus is that layer's share of a request:

- ``request-id``: no delegate setting the id around each request; the header is a constant;
- ``connection-bounds``: Tornado's own HTTPServer paths (no exchange wrappers, no state);
- ``origin-check``: no Origin/Referer check (Tornado runs it only for unsafe methods);
- ``device-binding``: no check that a bound session brought its short-lived cookie;
- ``change-check``: the session's values are not re-encoded to find changes at commit;
- ``user-lookup``: the session's user found once, then handed back as it is;
- ``session``: no session at all (no cookie verification, no load, no commit, no Redis read):
  the user found once, then given to every request;
- ``redis``: the store's read answered from the record it read first (no Redis round trip,
  no decode), the session layer otherwise whole;
- ``headers``: no Cache-Control and security headers (X-Request-ID stays);
- ``access-log``: ``[log] access = false``;
- ``metrics``: ``[metrics] enabled = false`` (no request counting, no timed store).
"""

from __future__ import annotations

import os
import runpy
import sys
from typing import Any

LAYERS = (
    "request-id",
    "connection-bounds",
    "origin-check",
    "device-binding",
    "change-check",
    "user-lookup",
    "session",
    "redis",
    "headers",
    "access-log",
    "metrics",
)


def remove(layer: str) -> None:
    if layer == "access-log":
        os.environ["CAMPUS_LOG_ACCESS"] = "false"
    elif layer == "metrics":
        os.environ["CAMPUS_METRICS_ENABLED"] = "false"
    elif layer == "request-id":
        import tornado.web

        from campus.observability import requestid

        requestid.Application.start_request = tornado.web.Application.start_request  # type: ignore[method-assign]
        requestid.request_id = lambda: "0"
    elif layer == "connection-bounds":
        from tornado.httpserver import HTTPServer

        from campus.http.connections import BoundedServer

        BoundedServer.start_request = HTTPServer.start_request  # type: ignore[method-assign]
        BoundedServer.handle_stream = HTTPServer.handle_stream  # type: ignore[method-assign]
        BoundedServer.on_close = HTTPServer.on_close  # type: ignore[method-assign]
    elif layer == "origin-check":
        from campus.web.handlers.base import BaseHandler

        BaseHandler.check_xsrf_cookie = lambda self: None  # type: ignore[method-assign]
    elif layer == "device-binding":
        from campus.web.binding import policy

        policy.enforce = lambda handler: None
    elif layer == "change-check":
        from campus.session import manager

        manager._changes = lambda data, snapshot: ({}, [])
    elif layer in ("user-lookup", "session"):
        _user_once(layer)
    elif layer == "redis":
        from campus.session.stores.redis import RedisStore

        read = RedisStore.load
        cache: dict[str, Any] = {}

        async def load(self: RedisStore, sid: str, *, touch: int | None) -> Any:
            if sid not in cache:
                cache[sid] = await read(self, sid, touch=touch)
            return cache[sid]

        RedisStore.load = load  # type: ignore[method-assign]
    elif layer == "headers":
        from campus.observability import requestid
        from campus.web.handlers.base import BaseHandler

        def only_the_id(self: Any) -> None:
            self.set_header(requestid.HEADER, requestid.request_id())

        BaseHandler.set_default_headers = only_the_id  # type: ignore[method-assign]
    else:
        raise SystemExit(f"layers.py: unknown layer {layer!r}; one of {', '.join(LAYERS)}")


def _user_once(layer: str) -> None:
    from campus.web.handlers.auth import MeHandler, SessionHandler

    lookup = SessionHandler.session_user
    found: list[Any] = []

    async def session_user(self: SessionHandler) -> Any:
        if not found:  # the first signed-in request finds the user for real
            user = await lookup(self)
            if user is None:
                return None
            found.append(user)
        return found[0]

    SessionHandler.session_user = session_user  # type: ignore[method-assign]
    if layer == "user-lookup":
        return
    prepare = MeHandler.prepare

    async def no_session(self: MeHandler) -> None:
        if not found:  # the first request (the bench's log-in check) loads it for real
            await prepare(self)
            return
        self.current_user = found[0]  # no pending session: finish() commits nothing

    MeHandler.prepare = no_session  # type: ignore[method-assign]


if __name__ == "__main__":
    layer = sys.argv[1]
    remove(layer)
    sys.argv = ["campus", *sys.argv[2:]]
    runpy.run_module("campus", run_name="__main__", alter_sys=True)

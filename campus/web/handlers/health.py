"""GET /healthz: is the session store answering? Never touches a session."""

from __future__ import annotations

import asyncio

from campus.session import StoreUnavailable
from campus.web.handlers.base import BaseHandler


class HealthHandler(BaseHandler):
    async def get(self) -> None:
        store = self.services.sessions.store
        try:
            await asyncio.wait_for(store.ping(), self.services.config.redis.timeout)
        except (StoreUnavailable, TimeoutError):
            self.set_status(503)
            self.set_header("Retry-After", "1")
            self.write(
                {
                    "status": "unavailable",
                    "store": store.name,
                    "errorMessage": "Session store unavailable",
                }
            )
            return
        self.write({"status": "ok", "store": store.name})

    head = get  # load balancers probe with HEAD too

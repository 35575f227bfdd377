"""GET /healthz: is the session store answering? Never touches a session."""

from __future__ import annotations

import asyncio

from campus.http.errors import RETRY_AFTER, error_body
from campus.session import StoreUnavailable
from campus.web.handlers.base import BaseHandler


class HealthHandler(BaseHandler):
    async def get(self) -> None:
        store = self.services.sessions.store
        try:
            await asyncio.wait_for(store.ping(), self.services.config.redis.timeout)
        except (StoreUnavailable, TimeoutError):
            self.set_status(503)
            self.set_header("Retry-After", str(RETRY_AFTER))
            self.set_header("Content-Type", "application/json; charset=UTF-8")
            self.finish(
                error_body("Session store unavailable", status="unavailable", store=store.name)
            )
            return
        self.write({"status": "ok", "store": store.name})

    head = get  # load balancers probe with HEAD too

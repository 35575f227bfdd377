"""A session workload for the soak and failover runs: logins, reads, session ends, counted.

Each virtual user loops: log in (POST /login), read a few times (GET /api/me), then end the
session one of three ways (POST /logout, DELETE /api/sessions/<handle>, or leave it to be
revoked by `campus sessions revoke`). Requests alternate between the campus processes given:
a session made on one is read on the other. Every answer is counted by status, per second,
with whether a 503 carried Retry-After; anything that is not a status (a refused or reset
connection, a timeout) is counted as an error by kind.
"""

from __future__ import annotations

import asyncio
import collections
import json
import time
from dataclasses import dataclass, field
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest, HTTPResponse

PASSWORD = "correct horse battery staple"


@dataclass
class Tally:
    """Every answer: by status overall, by second of the run, and failures by kind."""

    started: float = field(default_factory=time.monotonic)
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    per_second: dict[int, collections.Counter[int]] = field(
        default_factory=lambda: collections.defaultdict(collections.Counter)
    )
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    by_route: collections.Counter[str] = field(default_factory=collections.Counter)
    logout_500s: list[float] = field(default_factory=list)  # seconds into the run
    no_retry_after: int = 0  # 503s without Retry-After
    logins: list[tuple[float, str, str]] = field(default_factory=list)  # (when, port, cookie)

    def count(self, route: str, status: int, headers: Any) -> None:
        now = time.monotonic() - self.started
        self.statuses[status] += 1
        self.per_second[int(now)][status] += 1
        self.by_route[f"{route} {status}"] += 1
        if status == 500 and route == "POST /logout":  # "Could not log out." when Redis fails
            self.logout_500s.append(round(now, 1))
        if status == 503 and not headers.get("Retry-After"):
            self.no_retry_after += 1

    def window(self, status: int) -> tuple[float, float] | None:
        """First and last second of the run in which *status* was answered."""
        seconds = [s for s, counts in self.per_second.items() if counts.get(status)]
        return (min(seconds), max(seconds) + 1) if seconds else None


class Driver:
    """*users* virtual users against the campus *ports*, until stop() is called."""

    def __init__(self, ports: list[int], emails: list[str], users: int, tally: Tally) -> None:
        AsyncHTTPClient.configure(None, max_clients=users * 2)
        self.http = AsyncHTTPClient()
        self.ports, self.emails, self.users, self.tally = ports, emails, users, tally
        self.running = True

    async def call(
        self, port: int, method: str, path: str, cookie: str = "", body: Any = None
    ) -> HTTPResponse | None:
        headers = {"Cookie": f"campus.sid={cookie}"} if cookie else {}
        if body is not None:
            headers["Content-Type"] = "application/json"
        request = HTTPRequest(
            f"http://127.0.0.1:{port}{path}",
            method=method,
            headers=headers,
            body=json.dumps(body) if body is not None else None,
            allow_nonstandard_methods=True,
            request_timeout=10,
        )
        try:
            response = await self.http.fetch(request, raise_error=False)
        except HTTPClientError as exc:  # raise_error=False still raises for 599
            self.tally.errors[f"{exc.code} {exc.message}"[:60]] += 1
            return None
        except OSError as exc:
            self.tally.errors[type(exc).__name__] += 1
            return None
        if response.code == 599:
            self.tally.errors[f"599 {type(response.error).__name__}"] += 1
            return None
        route = f"{method} {'/api/sessions/<handle>' if method == 'DELETE' else path}"
        self.tally.count(route, response.code, response.headers)
        return response

    async def user(self, number: int) -> None:
        email = self.emails[number % len(self.emails)]
        round_ = 0
        while self.running:
            round_ += 1
            port = self.ports[(number + round_) % len(self.ports)]
            login = await self.call(
                port, "POST", "/login", body={"email": email, "password": PASSWORD}
            )
            if login is None or login.code != 200:
                await asyncio.sleep(0.2)
                continue
            cookie = _cookie(login)
            self.tally.logins.append((time.monotonic(), str(port), cookie))
            for read in range(4):
                other = self.ports[(number + round_ + read) % len(self.ports)]
                await self.call(other, "GET", "/api/me", cookie)
            how = round_ % 3
            if how == 0:
                await self.call(port, "POST", "/logout", cookie, body={})
            elif how == 1:
                listing = await self.call(port, "GET", "/api/sessions", cookie)
                if listing is not None and listing.code == 200:
                    mine = [s for s in json.loads(listing.body)["sessions"] if s["current"]]
                    if mine:
                        await self.call(
                            port, "DELETE", f"/api/sessions/{mine[0]['handle']}", cookie
                        )
            # how == 2: left alive, for revocation or expiry

    async def run(self, seconds: float) -> None:
        tasks = [asyncio.create_task(self.user(n)) for n in range(self.users)]
        await asyncio.sleep(seconds)
        self.running = False
        await asyncio.gather(*tasks)


def _cookie(response: HTTPResponse) -> str:
    for header in response.headers.get_list("Set-Cookie"):
        if header.startswith("campus.sid="):
            return header.split(";", 1)[0].removeprefix("campus.sid=").strip('"')
    return ""

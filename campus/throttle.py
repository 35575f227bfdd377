"""Login throttling: too many failed logins for one email or one client address is a 429.

The counters live in the session store, so every process and machine sees the same ones.
A login costs two store calls, each on one key:

1. before the password is checked, a look at the client address's counter — a hammering
   address is refused without burning Argon2 time;
2. after it, one call on the email's counter that decides and records together: a success
   forgets the email's failures, a failure adds one. A throttled email is left as it is and
   answered 429 whether the password was right or not, so neither this answer nor a later
   one tells an attacker that a guess was good.

A failure then adds one to the address's counter. An address that logs in successfully keeps
its failures: otherwise one valid account would let an attacker wipe its address's count
between guesses at other accounts.

The email is judged after the password check rather than before so that a login stays at
three Redis commands with the session write (a separate reset would be a fourth). The Argon2
time this spends on a throttled email buys an attacker nothing: fresh emails cost it too.
"""

from __future__ import annotations

import math

from campus.config import LoginConfig
from campus.session.store import Attempt, SessionStore
from campus.users import normalize_email


class Throttled(Exception):
    """Too many recent failures; ``retry_after`` is whole seconds, at least 1."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"throttled for {seconds:.0f}s")
        self.retry_after = max(1, math.ceil(seconds))


class LoginThrottle:
    """Per-email and per-address failure counters over a sliding window."""

    def __init__(self, store: SessionStore, config: LoginConfig) -> None:
        self._store = store
        self._window = config.window
        self._limit = config.max_failures

    async def before(self, address: str) -> None:
        """Raise Throttled if the client address has too many recent failures."""
        await self._attempt("addr:" + address, Attempt.CHECK)

    async def after(self, email: str, address: str, *, ok: bool) -> None:
        """Record the outcome of a password check; raise Throttled if the email is throttled."""
        outcome = Attempt.SUCCESS if ok else Attempt.FAILURE
        await self._attempt("email:" + normalize_email(email), outcome)
        if not ok:
            # Its answer does not matter: this attempt was checked, so it is a 403 even if a
            # concurrent failure has just throttled the address.
            await self._store.attempt(
                "addr:" + address, outcome, window=self._window, limit=self._limit
            )

    async def _attempt(self, key: str, outcome: Attempt) -> None:
        seconds = await self._store.attempt(key, outcome, window=self._window, limit=self._limit)
        if seconds > 0:
            raise Throttled(seconds)

"""Login throttling: too many failed logins for one email or one client address is a 429.

A browser that signed in as an email before (a device cookie, campus.web.devices) is counted
on a counter of its own instead, so that no one else's failures lock it out (OWASP, "Slow
Down Online Guessing Attacks with Device Cookies"). What follows is for the others.

The counters live in the store (its :class:`~campus.session.store.AttemptCounters` side), so
every process and machine sees the same ones. Each login is counted *before* its password is
checked, against both the client address and the email, all or nothing:

1. ``reserve``: one more attempt for the address and for the email — or, when either already
   holds ``max_failures`` attempts in the window, nothing at all and a 429. The check and the
   count are one atomic step, so N guesses sent at once get at most ``max_failures`` password
   checks (and 403s) between them; the rest are refused before any Argon2 time is spent.
2. the password check;
3. on success only, ``give_back``: the address gets its attempt back, and the email's
   failures are forgotten. A failure needs no third step: its reservation *is* the count.

A throttled email or address is answered 429 whether the password is right or not, so no
answer tells an attacker that a guess was good; unknown emails are counted exactly like
known ones. An address that logs in successfully keeps its other failures: otherwise one
valid account would let an attacker wipe its address's count between guesses at others.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from typing import cast

from campus.accounts.users import normalize_email
from campus.config import LoginConfig
from campus.session.store import AttemptCounters


class Throttled(Exception):
    """Too many recent failures; ``retry_after`` is whole seconds, at least 1."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"throttled for {seconds:.0f}s")
        self.retry_after = max(1, math.ceil(seconds))


@dataclass(frozen=True, slots=True)
class Reservation:
    """One login attempt, counted on its counters until given back."""

    attempt: str
    #: Counters that get this attempt back on success (the address).
    give_back: tuple[str, ...]
    #: Counters whose failures a success forgets (the email; a trusted device).
    forget: tuple[str, ...]


class LoginThrottle:
    """Per-email and per-address attempt counters over a sliding window."""

    def __init__(self, counters: object, config: LoginConfig) -> None:
        """``counters``: the store, which must implement AttemptCounters besides sessions."""
        if not all(callable(getattr(counters, m, None)) for m in ("reserve", "give_back")):
            raise TypeError(f"{type(counters).__name__} does not implement AttemptCounters")
        # Not isinstance(): from Python 3.12 it cannot see methods a proxy provides through
        # __getattr__ (a metrics wrapper around the store, for one).
        self._counters = cast(AttemptCounters, counters)
        self._window = config.window
        self._limit = config.max_failures

    async def reserve(self, email: str, client: str, device: str | None = None) -> Reservation:
        """Count this attempt before its password is checked; raise Throttled if no room.

        *client*: the key the client is counted under (campus.http.clients.client_key: an
        IPv4 address, an IPv6 client's /64).

        *device*: the id of a trusted device (a device cookie for this email): the attempt is
        counted on that device alone, never refused for the email's or the address's count.
        """
        if device is not None:
            device_key = "device:" + device
            reservation = Reservation(secrets.token_hex(8), (), (device_key,))
            keys = [device_key]
        else:
            address_key = "addr:" + client
            email_key = "email:" + normalize_email(email)
            reservation = Reservation(secrets.token_hex(8), (address_key,), (email_key,))
            keys = [address_key, email_key]
        wait = await self._counters.reserve(
            keys, reservation.attempt, window=self._window, limit=self._limit
        )
        if wait > 0:
            raise Throttled(wait)
        return reservation

    async def cancel(self, reservation: Reservation) -> None:
        """No password was checked (no place for the check): every counter gets it back."""
        keys = [*reservation.give_back, *reservation.forget]
        await self._counters.give_back(reservation.attempt, keys)

    async def succeeded(self, reservation: Reservation) -> None:
        """The password was right: the address gets its attempt back, the email (or the
        trusted device) starts over. A trusted device's success leaves the email's count:
        the failures of others stay counted against untrusted clients."""
        await self._counters.give_back(
            reservation.attempt, list(reservation.give_back), forget=list(reservation.forget)
        )

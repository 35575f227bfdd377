"""A bound on the password checks waiting for the hashing workers.

Each Argon2 check holds a core for tens of milliseconds. Unbounded, a burst of logins queues
every check, and a real login waits behind all of them (400 abandoned logins kept one waiting
90 s). :class:`CheckGate` admits a few checks per worker, running or waiting; a login past
that is refused at once (:class:`ChecksBusy`, a 503 with Retry-After), with no hashing and
no failure counted. Logins from a trusted device (campus.web.devices) have a reserve of their
own on top, so a flood of strangers' logins cannot fill every place a known browser needs.

One account's trusted logins hold at most :data:`PER_ACCOUNT` places; more at once are
:class:`AccountBusy` (a 429, like the throttle's, so N guesses sent at once still get only
403s and 429s). Otherwise an account's holder could fill every place, reserve included, with
correct logins from devices of their own, which the per-address count does not hold back
(each success gives its count back), and nobody else could sign in. Logins without a device
cookie need no such cap: the per-address and per-email counts bound them.

Admission is counted on the event loop (no lock): enter and leave happen there.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

#: Checks admitted per hashing worker, running or waiting: each waits for at most
#: ``PER_WORKER - 1`` others on its worker (a fraction of a second at the default cost).
PER_WORKER = 4
#: Places one account's logins from trusted devices may hold at once.
PER_ACCOUNT = 2


class ChecksBusy(Exception):
    """Every place for a password check is taken: try again in ``retry_after`` seconds."""

    retry_after = 1


class AccountBusy(ChecksBusy):
    """This account's trusted logins hold :data:`PER_ACCOUNT` places: a 429, not a 503."""


class CheckAbandoned(Exception):
    """The client went away before its password check started: it was not run."""


class CheckGate:
    """At most ``workers * PER_WORKER`` checks in flight, plus ``workers`` for trusted devices."""

    def __init__(self, workers: int, per_worker: int = PER_WORKER) -> None:
        self.capacity = max(1, workers) * per_worker
        self.reserve = max(1, workers)
        self.admitted = 0
        self._trusted: dict[str, int] = {}  # places held by each account's trusted logins

    @contextmanager
    def admit(self, account: str, *, trusted: bool = False) -> Iterator[None]:
        """A place for one check of *account* (a normalised email), or at once ChecksBusy
        (every place taken) or AccountBusy (the account's trusted logins hold theirs)."""
        held = self._trusted.get(account, 0) if trusted else 0
        if held >= PER_ACCOUNT:
            raise AccountBusy
        if self.admitted >= self.capacity + (self.reserve if trusted else 0):
            raise ChecksBusy
        self.admitted += 1
        if trusted:
            self._trusted[account] = held + 1
        try:
            yield
        finally:
            self.admitted -= 1
            if trusted:
                left = self._trusted.pop(account) - 1
                if left:
                    self._trusted[account] = left

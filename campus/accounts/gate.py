"""A bound on the password checks waiting for the hashing workers.

Each Argon2 check holds a core for tens of milliseconds. Unbounded, a burst of logins queues
every check, and a real login waits behind all of them (400 abandoned logins kept one waiting
90 s). :class:`CheckGate` admits a few checks per worker, running or waiting; a login past
that is refused at once (:class:`ChecksBusy`, a 503 with Retry-After), with no hashing and
no failure counted. Logins from a trusted device (campus.web.devices) have a reserve of their
own on top, so a flood of strangers' logins cannot fill every place a known browser needs.

Admission is counted on the event loop (no lock): enter and leave happen there.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

#: Checks admitted per hashing worker, running or waiting: each waits for at most
#: ``PER_WORKER - 1`` others on its worker (a fraction of a second at the default cost).
PER_WORKER = 4


class ChecksBusy(Exception):
    """Every place for a password check is taken: try again in ``retry_after`` seconds."""

    retry_after = 1


class CheckAbandoned(Exception):
    """The client went away before its password check started: it was not run."""


class CheckGate:
    """At most ``workers * PER_WORKER`` checks in flight, plus ``workers`` for trusted devices."""

    def __init__(self, workers: int, per_worker: int = PER_WORKER) -> None:
        self.capacity = max(1, workers) * per_worker
        self.reserve = max(1, workers)
        self.admitted = 0

    @contextmanager
    def admit(self, *, trusted: bool = False) -> Iterator[None]:
        """A place for one check (the throttle's count and the hash) or ChecksBusy at once."""
        room = self.capacity + (self.reserve if trusted else 0)
        if self.admitted >= room:
            raise ChecksBusy
        self.admitted += 1
        try:
            yield
        finally:
            self.admitted -= 1

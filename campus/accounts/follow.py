"""Following the users file: each process picks up every good new version within seconds.

Every :data:`POLL_SECONDS` the file's identity (device, inode, modification time, size) is
compared with the version loaded: a ``stat``, off the event loop, once a second whatever the
traffic (never per request). A change — an atomic rename by ``campus users``, configuration
management or an editor, or a rewrite in place — is read, validated and swapped in whole.
A version modified too recently for its identity to show every later change (the file
system's clock is coarse) is read once more, and compared by content.

A version that fails (bad JSON, a record refused, the file gone: an editor that deletes and
recreates must not sign everybody out) is one error line, once per distinct failure, and the
last good directory stays. Users who are no longer in the file are handed to ``on_removed``
(the server ends their sessions in the store).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from campus.accounts.directory import Snapshot, UserDirectory
from campus.accounts.records import (
    FileVersion,
    UsersError,
    file_identity,
    parse_records,
    read_version,
)

log = logging.getLogger("campus.users")

#: How often the file is looked at: a change shows within this, plus the time to read it.
POLL_SECONDS = 1.0

#: Called with the keys of the users a new version removed.
OnRemoved = Callable[[set[str]], Awaitable[None]]


class UsersFileFollower:
    """Polls the users file of a directory and swaps in each new version that loads."""

    def __init__(
        self,
        directory: UserDirectory,
        *,
        on_removed: OnRemoved | None = None,
        interval: float = POLL_SECONDS,
    ) -> None:
        self.directory = directory
        self._on_removed = on_removed
        self._interval = interval
        self._seen = directory.snapshot.version  # the version last looked at, good or not
        self._failure: str | None = None  # the failure last reported
        self._task: asyncio.Task[None] | None = None
        self._endings: set[asyncio.Task[None]] = set()  # strong references until done
        self._polling = asyncio.Lock()  # the timer's polls and look_again's, one at a time
        directory.follow_with(self.poll)

    def start(self) -> None:
        """Poll from now on, in the running event loop."""
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        """Stop polling; let the ending of removed users' sessions finish."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._endings:
            await asyncio.gather(*self._endings, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.poll()

    async def poll(self) -> None:
        """Look at the file once; load it if it changed. Never raises."""
        async with self._polling:
            await self._poll()

    async def _poll(self) -> None:
        loop = asyncio.get_running_loop()
        started = time.time()
        try:
            self._seen, outcome = await loop.run_in_executor(None, self._look, self._seen)
        except Exception as exc:  # a bug: reported like a failure, the poll goes on
            if self._report(f"{type(exc).__name__}: {exc}"):
                log.exception("users file not reloaded")
            return
        self.directory.checked_at = started
        if isinstance(outcome, UsersError):
            if self._report(str(outcome)):
                log.error(
                    "users file not reloaded, the last good one stays (%d users): %s",
                    len(self.directory),
                    outcome,
                )
        elif outcome is not None:
            self._swap(outcome)

    def _look(self, seen: FileVersion) -> tuple[FileVersion, Snapshot | UsersError | None]:
        """In a thread: the version now, and the snapshot it loads, its error, or None for
        no change."""
        path = self.directory.path
        try:
            if file_identity(path) == seen.identity and not seen.racy:
                return seen, None
            data, version = read_version(path)
        except UsersError as err:
            return seen, err  # cannot even look: tried again at the next poll
        if version.digest == seen.digest:
            return version, None  # the same bytes (or still no file)
        if data is None:
            return version, UsersError(f"{path} is missing")
        try:
            return version, self.directory.build(parse_records(data, path), version)
        except UsersError as err:
            return version, err

    def _report(self, failure: str) -> bool:
        """Whether this failure is new (else it was reported already)."""
        new, self._failure = failure != self._failure, failure
        return new

    def _swap(self, snapshot: Snapshot) -> None:
        previous = self.directory.replace(snapshot)
        self._failure = None
        count = len(snapshot.users)
        if count:
            log.info("users file reloaded: %s, %d users", self.directory.path, count)
        else:
            log.warning("users file reloaded: %s holds no users", self.directory.path)
        removed = previous.users.keys() - snapshot.users.keys()
        if removed and self._on_removed is not None:
            task = asyncio.ensure_future(self._on_removed(removed))
            self._endings.add(task)
            task.add_done_callback(self._endings.discard)

"""The live directory of users: who exists now, and the password check.

A :class:`UserDirectory` holds one :class:`Snapshot` of the users file at a time, swapped
whole when the file changes (campus.accounts.follow), so a request reads a user with one
dictionary lookup and never sees half of a change. Each :class:`User` carries its public
record, built once per load: requests hand it out as it is, without copying.

Password checks run off the event loop, in :meth:`UserDirectory.check_password` alone.
Unknown emails are checked too, against a dummy hash, so that a 403 never tells whether the
email has an account, even when the file mixes Argon2 parameters (older hashes not yet
upgraded, a few accounts made stronger): each parameter set in the file has a dummy, and an
unknown email is always checked against the same one, drawn by a keyed hash of the email in
proportion to the users of each set. Its time is that of a known user of that set; the key
comes from the file's own (salted) hashes, so every process reading the file draws alike and
nobody outside can tell which set an email draws. A hash made with other parameters
than the configured ones is upgraded at the user's next successful login, written back
atomically when this process may write the file, and otherwise reported once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import hashlib
import hmac
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import argon2
from argon2 import PasswordHasher
from argon2.exceptions import Argon2Error, InvalidHashError, VerificationError

from campus.accounts.edits import public, replace_hash
from campus.accounts.emails import normalize_email
from campus.accounts.gate import CheckAbandoned, CheckGate
from campus.accounts.records import (
    DEMO_EMAIL,
    DEMO_PASSWORD,
    MISSING,
    FileVersion,
    StrPath,
    UsersError,
    hash_parameters,
    parse_records,
    read_records,
    read_version,
)

log = logging.getLogger("campus.users")

OptionalExecutor = concurrent.futures.Executor | None


@dataclass(frozen=True, slots=True)
class User:
    """One account as the users file has it now."""

    #: The normalised email: what sessions, login counters and the store's index refer to.
    key: str
    #: The record without its password fields (campus.accounts.edits.public), as /login and
    #: /api/me answer it. Shared by every request until the next load: read it, never
    #: change it.
    public: dict[str, Any]
    password_hash: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One load of the users file: the users by key, the dummy hashes, the version read."""

    users: dict[str, User]
    #: One hash per parameter set in the file, with how many users have that set.
    dummies: tuple[tuple[int, str], ...]
    version: FileVersion = MISSING
    #: Draws an unknown email's dummy: the same in every process that reads this file.
    draw_key: bytes = b""

    def dummy_for(self, key: str) -> str:
        """The dummy hash an unknown email (a normalised one) is always checked against."""
        total = sum(count for count, _ in self.dummies)
        digest = hmac.digest(self.draw_key, key.encode("utf-8", "surrogatepass"), "sha256")
        draw = int.from_bytes(digest[:8], "big") % max(1, total)
        for count, dummy in self.dummies:
            if draw < count:
                return dummy
            draw -= count
        return self.dummies[-1][1]


def _cost(params: argon2.Parameters) -> tuple[int, int, int]:
    """Orders parameter sets by the time a check takes: memory times passes; with equal
    work, fewer lanes is slower (argon2-cffi computes the lanes one after the other)."""
    return (params.memory_cost * params.time_cost, params.memory_cost, -params.parallelism)


def verify(password_hash: str, password: bytes) -> bool:
    """One Argon2 check, off the event loop; any failure is a plain "no"."""
    try:
        return PasswordHasher().verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def _verify_unless(password_hash: str, secret: bytes, gone: Callable[[], bool] | None) -> bool:
    """:func:`verify`, in a worker, unless the client went away while the check waited."""
    if gone is not None and gone():
        raise CheckAbandoned
    return verify(password_hash, secret)


class UserDirectory:
    """The users file loaded into memory, with password checks off the event loop."""

    path: Path

    def __init__(
        self,
        path: StrPath,
        records: list[dict[str, Any]] | None = None,
        *,
        executor: OptionalExecutor = None,
        hasher: PasswordHasher | None = None,
        refuse_demo_of: StrPath | None = None,
        version: FileVersion = MISSING,
        workers: int | None = None,
    ) -> None:
        """*records*: validated (campus.accounts.records). *refuse_demo_of*: the shipped
        development file; a load that holds its demo account fails (production).
        *workers*: the executor's threads, which size the gate in front of it."""
        self.path = Path(path)
        self._executor = executor
        #: Admits a few password checks per worker; the login handler enters it.
        self.gate = CheckGate(workers or os.cpu_count() or 2)
        #: Hashes new passwords; a stored hash it would make differently is upgraded at login.
        self.hasher = hasher
        self.refuse_demo_of = refuse_demo_of
        self._upgrades: set[asyncio.Task[None]] = set()  # strong references until done
        self._upgrade_blocked = False
        self._snapshot = Snapshot({}, ())  # replaced at once: build() reuses its dummies
        self._snapshot = self.build(records or [], version)
        #: When the file was last looked at (wall clock): a load, or a poll of its follower.
        self.checked_at = time.time()
        self._look_now: Callable[[], Awaitable[None]] | None = None

    @classmethod
    def load(
        cls,
        path: StrPath,
        *,
        executor: OptionalExecutor = None,
        hasher: PasswordHasher | None = None,
        required: bool = False,
        refuse_demo_of: StrPath | None = None,
        workers: int | None = None,
    ) -> UserDirectory:
        """Read and validate the file; a missing file is an empty directory unless *required*."""
        data, version = read_version(path)
        if data is None and required:
            raise UsersError(
                f"{path} does not exist: create it with `campus users add EMAIL`"
                " (a file holding [] starts with no users)"
            )
        records = [] if data is None else parse_records(data, path)
        return cls(
            path,
            records,
            executor=executor,
            hasher=hasher,
            refuse_demo_of=refuse_demo_of,
            version=version,
            workers=workers,
        )

    # -- the current snapshot ------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._snapshot.users)

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    def get(self, key: str) -> User | None:
        """The user with this key (an already normalised email): one dictionary lookup."""
        return self._snapshot.users.get(key)

    def find(self, email: str) -> User | None:
        """The user with this email, however it is spelled."""
        return self._snapshot.users.get(normalize_email(email))

    def follow_with(self, look: Callable[[], Awaitable[None]]) -> None:
        """What :meth:`look_again` awaits: the follower's poll."""
        self._look_now = look

    async def look_again(self) -> None:
        """Look at the file now, before a user signed in since the last look is taken for
        gone: that sign-in may have read a version this process has not (another worker
        that polled first, another machine whose copy changed first)."""
        if self._look_now is not None:
            await self._look_now()

    def build(self, records: list[dict[str, Any]], version: FileVersion = MISSING) -> Snapshot:
        """A snapshot of validated records, which it takes over (they must not change after).
        Costs a hash for each parameter set new to the file (its dummy).

        Thread-safe (reloads run it off the event loop); raises UsersError for a file this
        process must refuse (the demo account, where refused).
        """
        users = {}
        for record in records:  # taken over: the public records share their values
            key = normalize_email(record["email"])
            users[key] = User(key, public(record), record["password_hash"])
        if self.refuse_demo_of is not None:
            demo = demo_accounts(users.values(), self.refuse_demo_of)
            if demo:
                raise UsersError(
                    f"{self.path} holds the development demo account ({demo[0]}, whose"
                    " password is published): remove it with `campus users remove`"
                )
        return Snapshot(users, self._dummies(users.values()), version, _draw_key(users))

    def _dummies(self, users: Iterable[User]) -> tuple[tuple[int, str], ...]:
        """A dummy hash per parameter set, with its users; each costs a hash when new."""
        # Users by the text that names their hash's parameters: parsed once per set.
        counts: dict[tuple[str, int, int], tuple[str, int]] = {}
        for user in users:
            key = _parameter_key(user.password_hash)
            example, count = counts.get(key, (user.password_hash, 0))
            counts[key] = (example, count + 1)
        sets: dict[tuple[Any, ...], tuple[argon2.Parameters, int]] = {}
        for example, count in counts.values():
            params = hash_parameters(example)
            if params is not None:  # Parameters are not hashable: keyed by their fields
                _, before = sets.get(dataclasses.astuple(params), (params, 0))
                sets[dataclasses.astuple(params)] = (params, before + count)
        made = {}
        for _, dummy in self._snapshot.dummies:
            params = hash_parameters(dummy)
            if params is not None:
                made[dataclasses.astuple(params)] = dummy
        if not sets:  # no users: a hash such as `users add` would make
            hasher = self.hasher or PasswordHasher()
            kept = [dummy for dummy in made.values() if not hasher.check_needs_rehash(dummy)]
            return ((1, kept[0] if kept else hasher.hash(secrets.token_bytes(32))),)
        dummies = []
        for fields, (params, count) in sorted(sets.items(), key=lambda item: _cost(item[1][0])):
            dummy = made.get(fields) or PasswordHasher.from_parameters(params).hash(
                secrets.token_bytes(32)
            )
            dummies.append((count, dummy))
        return tuple(dummies)

    def replace(self, snapshot: Snapshot) -> Snapshot:
        """Serve *snapshot* from now on (on the event loop); returns the one it replaces."""
        previous, self._snapshot = self._snapshot, snapshot
        return previous

    def reload(self) -> Snapshot:
        """Read the file again now and serve it; UsersError leaves the current snapshot."""
        data, version = read_version(self.path)
        snapshot = self.build([] if data is None else parse_records(data, self.path), version)
        self.replace(snapshot)
        return snapshot

    # -- passwords -----------------------------------------------------------------------

    async def authenticate(
        self, email: str, password: str, *, gone: Callable[[], bool] | None = None
    ) -> User | None:
        """The user if the password matches, else None (never raises for bad input).

        *gone*: whether the client has gone away; asked when a worker picks the check up,
        and if so the check is not run (CheckAbandoned).
        """
        snapshot = self._snapshot
        key = normalize_email(email)
        user = snapshot.users.get(key)
        target = snapshot.dummy_for(key) if user is None else user.password_hash
        secret = password.encode("utf-8", "surrogatepass")  # JSON may carry lone surrogates
        if not await self.check_password(target, secret, gone) or user is None:
            return None
        self._upgrade_later(user, secret)
        return self.get(user.key)  # as the file has it now: None if removed meanwhile

    async def check_password(
        self, password_hash: str, secret: bytes, gone: Callable[[], bool] | None = None
    ) -> bool:
        """The one place a password is checked: in the executor, never on the event loop.

        Not run (CheckAbandoned) if *gone* says so once a worker is free for it.
        """
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, _verify_unless, password_hash, secret, gone
        )

    def _upgrade_later(self, user: User, secret: bytes) -> None:
        """Rehash with the configured parameters after the answer; never delays a login."""
        if self.hasher is None or self._upgrade_blocked:
            return
        if not self.hasher.check_needs_rehash(user.password_hash):
            return
        task = asyncio.ensure_future(self._upgrade(user, secret))
        self._upgrades.add(task)
        task.add_done_callback(self._upgrades.discard)

    async def _upgrade(self, user: User, secret: bytes) -> None:
        assert self.hasher is not None
        old = user.password_hash
        loop = asyncio.get_running_loop()
        try:
            new = await loop.run_in_executor(self._executor, self.hasher.hash, secret)
            await loop.run_in_executor(None, replace_hash, self.path, user.key, old, new)
        except (UsersError, Argon2Error) as err:
            if not self._upgrade_blocked:
                self._upgrade_blocked = True
                log.warning(
                    "password hashes made with other Argon2 parameters are not upgraded: %s",
                    err,
                )
            return
        current = self.get(user.key)
        if current is not None and current.password_hash == old:
            # Until the reload of the file shows it, so that the next login does not upgrade again.
            self._snapshot.users[user.key] = dataclasses.replace(current, password_hash=new)
        log.info("upgraded the password hash of one user to the configured Argon2 parameters")

    async def wait_for_upgrades(self) -> None:
        """Let hash upgrades in flight finish (at shutdown, and in tests)."""
        while self._upgrades:
            await asyncio.gather(*self._upgrades, return_exceptions=True)


def _parameter_key(password_hash: str) -> tuple[str, int, int]:
    """What decides a hash's parameters: the text before its salt, the salt's and the
    digest's lengths (read once per distinct key, not once per user)."""
    head, _, rest = password_hash.rpartition("$")
    head, _, salt = head.rpartition("$")
    return head, len(salt), len(rest)


def _draw_key(users: dict[str, User]) -> bytes:
    """A key no one outside can know, the same wherever the file is read: its salted hashes."""
    digest = hashlib.sha256()
    for key in sorted(users):
        digest.update(users[key].password_hash.encode())
    return digest.digest()


def demo_accounts(users: Iterable[User], shipped: StrPath) -> list[str]:
    """Keys of users whose password is the published demo password (production refuses them).

    Checked: the demo email, and any user sharing a hash with the shipped development file
    (a copy under another name). A check per user would cost a hash each.
    """
    try:
        shipped_hashes = {r["password_hash"] for r in read_records(shipped)}
    except UsersError:
        shipped_hashes = set()
    return [
        user.key
        for user in users
        if (user.key == DEMO_EMAIL or user.password_hash in shipped_hashes)
        and verify(user.password_hash, DEMO_PASSWORD.encode())
    ]

"""Following the users file in a process: every good new version is swapped in, every failure
is one line once, the last good directory stays. Polls are called one by one here; the
servers that run them every second are tested in tests/test_accounts_live.py."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import argon2
import pytest

from campus.accounts.directory import UserDirectory
from campus.accounts.follow import UsersFileFollower
from campus.accounts.records import RACY_SECONDS
from tests.support.servers import REPO

CHEAP = argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
SLOWER = argon2.PasswordHasher(time_cost=3, memory_cost=16, parallelism=1)
ANN = {"email": "ann@example.edu", "name": "Ann", "password_hash": CHEAP.hash("ann-secret")}
BOB = {"email": "bob@example.edu", "name": "Bob", "password_hash": CHEAP.hash("bob-secret")}


def replace_file(path: Path, records: Any) -> None:
    """As `campus users`, configuration management and most editors write: a rename."""
    temporary = path.with_name(path.name + ".new")
    temporary.write_text(json.dumps(records) if not isinstance(records, str) else records)
    os.replace(temporary, path)


def age(path: Path, seconds: float = 10 * RACY_SECONDS) -> None:
    """Make the file look modified long ago (so its identity alone tells later changes)."""
    when = time.time() - seconds
    os.utime(path, (when, when))


class Following:
    """A directory, its follower, and what the follower reported, polled one poll at a time."""

    def __init__(self, path: Path, **options: Any) -> None:
        self.directory = UserDirectory.load(path, **options)
        self.removed: list[set[str]] = []
        self.follower = UsersFileFollower(self.directory, on_removed=self.on_removed)

    async def on_removed(self, keys: set[str]) -> None:
        self.removed.append(keys)

    def poll(self, times: int = 1) -> None:
        async def polls() -> None:
            for _ in range(times):
                await self.follower.poll()
            await self.follower.stop()  # lets on_removed run

        asyncio.run(polls())

    def names(self) -> dict[str, Any]:
        return {key: user.public.get("name") for key, user in self.directory.snapshot.users.items()}


@pytest.fixture
def users_file(tmp_path: Path) -> Path:
    path = tmp_path / "users.json"
    path.write_text(json.dumps([ANN, BOB]))
    age(path)
    return path


def lines(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level]


def test_nothing_changed_reads_nothing(users_file: Path, caplog: pytest.LogCaptureFixture) -> None:
    following = Following(users_file)
    before = following.directory.snapshot
    with caplog.at_level(logging.INFO, logger="campus.users"):
        following.poll(3)
    assert following.directory.snapshot is before
    assert caplog.records == []


def test_a_renamed_version_is_swapped_in_whole(
    users_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    following = Following(users_file)
    carl = {"email": "Carl@Example.edu", "roles": ["staff"], "password_hash": CHEAP.hash("c")}
    replace_file(users_file, [{**ANN, "name": "Ann B.", "roles": ["admin"]}, carl])
    with caplog.at_level(logging.INFO, logger="campus.users"):
        following.poll()
    assert following.names() == {"ann@example.edu": "Ann B.", "carl@example.edu": None}
    ann = following.directory.get("ann@example.edu")
    assert ann is not None and ann.public["roles"] == ["admin"]
    assert following.removed == [{"bob@example.edu"}]
    assert lines(caplog, logging.INFO) == [f"users file reloaded: {users_file}, 2 users"]


def test_a_rewrite_in_place_is_seen_even_within_one_clock_tick(users_file: Path) -> None:
    """Same size, same modification time, same inode: only the content differs. A version
    that recent is read once more and compared by content."""
    following = Following(users_file)
    replace_file(users_file, [ANN, BOB])  # a fresh version: recent
    following.poll()
    stamp = users_file.stat().st_mtime_ns
    users_file.write_text(json.dumps([{**ANN, "name": "Ann"[::-1]}, BOB]))  # same length
    os.utime(users_file, ns=(stamp, stamp))
    following.poll()
    assert following.names()["ann@example.edu"] == "nnA"


def test_a_copy_in_place_that_keeps_an_old_modification_time_is_seen(users_file: Path) -> None:
    """``cp -p`` or ``rsync --inplace -t`` over the file: same inode, same size, and the
    modification time of a version long past. Only the change time tells."""
    following = Following(users_file)
    replace_file(users_file, [ANN, BOB])
    age(users_file)
    following.poll()
    stamp = users_file.stat().st_mtime_ns
    time.sleep(0.01)  # the change time moves on
    users_file.write_text(json.dumps([{**ANN, "name": "Ann"[::-1]}, BOB]))  # same length
    os.utime(users_file, ns=(stamp, stamp))
    following.poll()
    assert following.names()["ann@example.edu"] == "nnA"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('[{"email": "ann@example.edu", "pass', "not valid JSON"),
        ('[{"email": "x@y.z", "password": "hunter2"}]', "plaintext 'password' field refused"),
        ("[]\n" * 0, "not valid JSON"),  # an editor's truncate, caught before its write
        (None, "is missing"),
    ],
)
def test_a_version_that_fails_is_one_line_and_the_last_good_stays(
    users_file: Path, caplog: pytest.LogCaptureFixture, content: str | None, message: str
) -> None:
    following = Following(users_file)
    if content is None:
        users_file.unlink()  # an editor that deletes, then writes anew
    else:
        replace_file(users_file, content)
    with caplog.at_level(logging.INFO, logger="campus.users"):
        following.poll(5)
    (error,) = lines(caplog, logging.ERROR)
    assert error.startswith("users file not reloaded, the last good one stays (2 users): ")
    assert message in error and "hunter2" not in error and "\n" not in error
    assert following.names() == {"ann@example.edu": "Ann", "bob@example.edu": "Bob"}
    assert following.removed == []

    caplog.clear()
    replace_file(users_file, [ANN])  # fixed
    with caplog.at_level(logging.INFO, logger="campus.users"):
        following.poll(3)
    assert lines(caplog, logging.INFO) == [f"users file reloaded: {users_file}, 1 users"]
    assert lines(caplog, logging.ERROR) == []
    assert following.removed == [{"bob@example.edu"}]


def test_each_distinct_failure_is_reported_once(
    users_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    following = Following(users_file)
    with caplog.at_level(logging.ERROR, logger="campus.users"):
        for broken in ("[", "[", "{}", "{}", "["):
            replace_file(users_file, broken)
            following.poll(2)
    errors = lines(caplog, logging.ERROR)
    assert [e.split(f"{users_file}: ", 1)[1] for e in errors] == [
        "not valid JSON (line 1: Expecting value)",
        "expected a JSON array of user records",
        "not valid JSON (line 1: Expecting value)",
    ]


def test_an_empty_array_signs_everybody_out_with_a_warning(
    users_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    following = Following(users_file)
    replace_file(users_file, [])
    with caplog.at_level(logging.INFO, logger="campus.users"):
        following.poll()
    assert lines(caplog, logging.WARNING) == [f"users file reloaded: {users_file} holds no users"]
    assert following.removed == [{"ann@example.edu", "bob@example.edu"}]


def test_a_file_that_appears_later_is_loaded(tmp_path: Path) -> None:
    """Development starts without a file (no users); `users add` then creates it."""
    path = tmp_path / "users.json"
    following = Following(path)
    following.poll()
    assert len(following.directory) == 0
    replace_file(path, [ANN])
    following.poll()
    assert following.names() == {"ann@example.edu": "Ann"}


def test_where_the_demo_account_is_refused_a_version_holding_it_is_too(
    users_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    shipped = REPO / "config" / "users.dev.json"
    following = Following(users_file, refuse_demo_of=shipped)
    (demo,) = json.loads(shipped.read_text())
    replace_file(users_file, [ANN, {**demo, "email": "ops@example.edu"}])
    with caplog.at_level(logging.ERROR, logger="campus.users"):
        following.poll()
    (error,) = lines(caplog, logging.ERROR)
    assert "holds the development demo account (ops@example.edu" in error
    assert "campus-demo" not in error
    assert len(following.directory) == 2


def test_the_dummies_follow_the_parameter_sets_in_the_file(users_file: Path) -> None:
    """Unknown emails are checked against hashes made like the users': one per parameter
    set, weighed by its users, after a user with costlier parameters is added and once that
    user is gone."""

    def dummies(following: Following) -> list[tuple[int, int, int]]:
        found = []
        for count, dummy in following.directory.snapshot.dummies:
            params = argon2.extract_parameters(dummy)
            found.append((count, params.time_cost, params.memory_cost))
        return found

    following = Following(users_file)
    assert dummies(following) == [(2, 1, 8)]
    slow = {"email": "slow@example.edu", "password_hash": SLOWER.hash("s")}
    replace_file(users_file, [ANN, slow, BOB])
    following.poll()
    assert dummies(following) == [(2, 1, 8), (1, 3, 16)]
    replace_file(users_file, [ANN])
    following.poll()
    assert dummies(following) == [(1, 1, 8)]

"""What following the users file costs: per request, per poll, per reload.

    python bench/users.py                  # files of 100, 1,000 and 10,000 users

- **Per request**: what a read-only request does to find its user — decode the session's
  ``user`` value and look the key up in the directory — against what campus 0.2 did, decode a
  copy of the record kept in the session. Nanoseconds, best of several timeit runs.
- **Per poll**: one look at an unchanged file (a ``stat``), as each process does once a second,
  and what that costs per second of a core.
- **Per reload**: reading, validating and swapping in a changed file (its hashes keep their
  parameters, so the dummy hash is not remade), by the number of users.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's campus

import argon2

from campus.accounts.directory import UserDirectory
from campus.accounts.follow import UsersFileFollower
from campus.session.store import encode_value, loads
from campus.web.services import session_user

HASH = argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash("x")


def records(count: int) -> list[dict[str, object]]:
    return [
        {
            "email": f"student{i}@campus.test",
            "name": f"Student Number {i}",
            "roles": ["student"],
            "password_hash": HASH,
        }
        for i in range(count)
    ]


def best(statement: object, number: int) -> float:
    """Seconds per call of *statement*, the best of five runs."""
    return min(timeit.repeat(statement, number=number, repeat=5)) / number  # type: ignore[arg-type]


def per_request(directory: UserDirectory) -> tuple[float, float]:
    """(now, campus 0.2) nanoseconds to get the signed-in user from a loaded session."""
    user = directory.get("student7@campus.test")
    assert user is not None
    key_text = encode_value("user", user.key)
    copy_text = encode_value("user", user.public)

    def now() -> object:
        return directory.get(session_user({"user": loads(key_text)}) or "")

    def before() -> object:
        return loads(copy_text)

    return best(now, 200_000) * 1e9, best(before, 200_000) * 1e9


def per_poll(follower: UsersFileFollower) -> float:
    """Microseconds of one look at an unchanged file (the part that runs in a thread)."""
    seen = follower.directory.snapshot.version
    return best(lambda: follower._look(seen), 2_000) * 1e6


def per_reload(path: Path, directory: UserDirectory, count: int) -> float:
    """Milliseconds to read, validate and swap in a changed file of *count* users."""
    changed = records(count)
    changed[0]["name"] = "Someone Else"
    path.write_text(json.dumps(changed))

    def reload() -> None:
        directory.reload()

    return best(reload, 3) * 1e3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", default="100,1000,10000", help="file sizes to measure")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="campus-users-bench-") as tmp:
        path = Path(tmp) / "users.json"
        for count in (int(n) for n in args.users.split(",")):
            path.write_text(json.dumps(records(count)))
            long_ago = time.time() - 60  # not a version so recent that it is read again
            os.utime(path, (long_ago, long_ago))
            directory = UserDirectory.load(path)
            follower = UsersFileFollower(directory)
            now, before = per_request(directory)
            poll = per_poll(follower)
            reload = per_reload(path, directory, count)
            print(
                f"{count:>6,} users: per request {now:.0f} ns (0.2's copy: {before:.0f} ns);"
                f" per poll {poll:.1f} us ({poll / 1e4:.4f}% of a core at one a second);"
                f" per reload {reload:.1f} ms"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

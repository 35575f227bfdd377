"""`python -m campus users ...` as an operator runs it: one line per failure, file left alone."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from campus.accounts.users import UserDirectory
from tests.support.servers import REPO

#: Long enough, and on no list of common passwords.
STRONG = "mauve-lantern-orbit-42"
#: What `users add` and `users remove` end with.
FOLLOW = "running servers follow the change within 2 s, without a restart"


class Run:
    """A finished `python -m campus` process."""

    def __init__(self, done: subprocess.CompletedProcess[str]) -> None:
        self.code = done.returncode
        self.out = done.stdout
        self.err = done.stderr

    def one_error_line(self) -> str:
        """The single stderr line of a failure (and proof there is no traceback)."""
        assert self.code != 0
        assert "Traceback" not in self.err
        lines = self.err.splitlines()
        assert len(lines) == 1, self.err
        assert lines[0].startswith("campus: ")
        return lines[0]


Campus = Callable[..., Run]


@pytest.fixture
def users_file(tmp_path: Path) -> Path:
    return tmp_path / "users.json"


@pytest.fixture
def campus(users_file: Path) -> Campus:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPUS_")}
    env["CAMPUS_USERS_FILE"] = str(users_file)

    def run(*args: str, stdin: str = "", **extra_env: str) -> Run:
        done = subprocess.run(
            [sys.executable, "-m", "campus", *args],
            cwd=REPO,
            env={**env, **extra_env},
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            start_new_session=True,  # no controlling terminal: getpass cannot open /dev/tty
        )
        return Run(done)

    return run


def test_add_then_list(campus: Campus, users_file: Path) -> None:
    stdin = "s3cret-" + STRONG + "\n"
    added = campus("users", "add", "Zed@Example.com", "--password-stdin", stdin=stdin)
    assert (added.code, added.err) == (0, "")
    assert added.out == f"added zed@example.com to {users_file}\n{FOLLOW}\n"
    named = campus("users", "add", "ann@example.com", "--name", "Ann A", "--password-stdin",
                   stdin=STRONG + "\r\n")  # fmt: skip
    assert named.code == 0, named.err
    for run in (added, named):
        said = run.out + run.err
        assert "s3cret" not in said and STRONG not in said and "$argon2" not in said

    listed = campus("users", "list")
    assert (listed.code, listed.err) == (0, "")
    assert listed.out == "ann@example.com\tAnn A\nzed@example.com\t\n"

    records = json.loads(users_file.read_text())
    assert [r["email"] for r in records] == ["zed@example.com", "ann@example.com"]
    assert all(r["password_hash"].startswith("$argon2id$") for r in records)
    assert oct(users_file.stat().st_mode & 0o777) == oct(0o600)


def test_password_stdin_strips_only_the_line_ending(campus: Campus, users_file: Path) -> None:
    stdin = f" {STRONG} \r\nmore\n"
    assert campus("users", "add", "a@b.c", "--password-stdin", stdin=stdin).code == 0
    directory = UserDirectory.load(users_file)
    assert asyncio.run(directory.authenticate("a@b.c", f" {STRONG} ")) is not None


def test_duplicate_add_fails_and_leaves_the_file(campus: Campus, users_file: Path) -> None:
    assert campus("users", "add", "a@b.c", "--password-stdin", stdin=STRONG + "\n").code == 0
    before = users_file.read_bytes()
    again = campus("users", "add", " A@B.C", "--password-stdin", stdin="other\n")
    assert "already exists" in again.one_error_line()
    assert again.code == 1
    assert users_file.read_bytes() == before


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["users", "add", "not-an-email", "--password-stdin"], "pw\n", "invalid email"),
        (["users", "add", "a b@c.d", "--password-stdin"], "pw\n", "invalid email"),
        (["users", "add", "user@@example.com", "--password-stdin"], "pw\n", "invalid email"),
        (["users", "add", "a@b.c", "--password-stdin"], "x\n", "password too short"),
        (["users", "add", "a@b.c", "--password-stdin"], "passwordpassword\n", "common"),
        (["users", "add", "a@b.c", "--password-stdin"], "\n", "password is empty"),
        (["users", "add", "a@b.c", "--password-stdin"], "", "no password on stdin"),
        (["users", "add", "a@b.c"], STRONG + "\n" + STRONG + "\n", "no terminal"),
    ],
)
def test_bad_add_is_one_line_and_no_file(
    campus: Campus, users_file: Path, args: list[str], stdin: str, message: str
) -> None:
    run = campus(*args, stdin=stdin)
    assert message in run.one_error_line()
    assert run.code == 1
    assert not users_file.exists()


def test_remove(campus: Campus, users_file: Path) -> None:
    campus("users", "add", "a@b.c", "--password-stdin", stdin=STRONG + "\n")
    campus("users", "add", "d@e.f", "--password-stdin", stdin=STRONG + "\n")
    removed = campus("users", "remove", "A@B.C")
    assert (removed.code, removed.err) == (0, "")
    assert removed.out.splitlines() == [
        f"removed a@b.c from {users_file}",
        "the memory store lives in the server process: the running server ends the user's"
        " sessions within 2 s",
        FOLLOW,
    ]
    assert campus("users", "list").out == "d@e.f\t\n"


def test_remove_missing(campus: Campus, users_file: Path) -> None:
    campus("users", "add", "a@b.c", "--password-stdin", stdin=STRONG + "\n")
    before = users_file.read_bytes()
    run = campus("users", "remove", "who@b.c")
    assert "no user" in run.one_error_line()
    assert run.code == 1
    assert users_file.read_bytes() == before


def test_broken_users_file_is_one_line(campus: Campus, users_file: Path) -> None:
    users_file.write_text('[{"email": "a@b.c", "password": "hunter2"}]')
    for args in (["users", "list"], ["users", "add", "x@y.z", "--password-stdin"]):
        run = campus(*args, stdin=STRONG + "\n")
        line = run.one_error_line()
        assert "plaintext" in line and str(users_file) in line and "hunter2" not in line
    assert users_file.read_text() == '[{"email": "a@b.c", "password": "hunter2"}]'


def test_bad_config_file_is_one_line(campus: Campus, tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("[server\nport = \n")
    run = campus("users", "list", CAMPUS_CONFIG=str(broken))
    assert str(broken) in run.one_error_line()
    assert run.code == 2


@pytest.mark.parametrize(
    "args",
    [["users"], ["users", "frobnicate"], ["--port", "nope", "users", "list"], ["nonsense"],
     ["users", "add"]],
)  # fmt: skip
def test_usage_errors_are_one_line_exit_2(campus: Campus, args: list[str]) -> None:
    run = campus(*args)
    run.one_error_line()
    assert run.code == 2


def test_global_flags_work_before_and_after_the_subcommand(campus: Campus, tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("nonsense = [\n")
    before = campus("--config", str(broken), "users", "list")
    after = campus("users", "list", "--config", str(broken))
    assert str(broken) in before.one_error_line()
    assert before.err == after.err
    assert campus("--port", "1234", "users", "list", "--root", str(REPO)).code == 0
    # Each subcommand takes only its own options: `users` does not listen anywhere.
    refused = campus("users", "list", "--host", "::1")
    assert "--host" in refused.one_error_line() and refused.code == 2


def test_add_never_creates_a_directory(campus: Campus, tmp_path: Path) -> None:
    """Run where the configured file's directory does not exist (another directory, a typo):
    one line naming it, before any password is asked for, and nothing is created."""
    target = tmp_path / "nowhere" / "users.json"
    run = campus("users", "add", "a@b.c", CAMPUS_USERS_FILE=str(target))  # no password given
    line = run.one_error_line()
    assert line.startswith(f"campus: {target.parent} does not exist: create that directory")
    assert run.code == 1 and not target.parent.exists()


def test_add_and_remove_name_the_file_they_write(campus: Campus, tmp_path: Path) -> None:
    """The resolved path: absolute, and the target of a symlinked users file."""
    real = tmp_path / "real" / "users.json"
    real.parent.mkdir()
    link = tmp_path / "users-link.json"
    link.symlink_to(real)
    added = campus(
        "users", "add", "a@b.c", "--password-stdin", stdin=STRONG, CAMPUS_USERS_FILE=str(link)
    )
    assert added.out.splitlines() == [f"added a@b.c to {real}", FOLLOW]
    assert link.is_symlink() and real.is_file()
    removed = campus("users", "remove", "a@b.c", CAMPUS_USERS_FILE=str(link))
    assert removed.out.splitlines()[0] == f"removed a@b.c from {real}"


def test_add_refuses_a_lookalike_of_an_existing_user(campus: Campus, users_file: Path) -> None:
    assert campus("users", "add", "bob@b.c", "--password-stdin", stdin=STRONG).code == 0
    before = users_file.read_bytes()
    run = campus("users", "add", "\uff42\uff4f\uff42@b.c", "--password-stdin", stdin=STRONG)
    assert "looks like bob@b.c, which exists in" in run.one_error_line()
    assert users_file.read_bytes() == before


def test_remove_with_redis_out_of_reach_says_the_servers_end_the_sessions(
    campus: Campus, users_file: Path, black_hole: int
) -> None:
    campus("users", "add", "a@b.c", "--password-stdin", stdin=STRONG)
    removed = campus(
        "users",
        "remove",
        "a@b.c",
        CAMPUS_STORE="redis",
        CAMPUS_REDIS_URL=f"redis://127.0.0.1:{black_hole}/0",
        CAMPUS_REDIS_TIMEOUT="0.3",
    )
    assert (removed.code, removed.err) == (0, "")
    said = removed.out.splitlines()
    assert said[0] == f"removed a@b.c from {users_file}"
    assert said[1].startswith("the session store could not be reached (")
    assert said[1].endswith("): running servers end the user's sessions within 2 s")
    assert said[2] == FOLLOW
    assert json.loads(users_file.read_text()) == []


def test_help_says_that_running_servers_follow(campus: Campus) -> None:
    for args in (["users", "--help"], ["users", "add", "--help"], ["users", "remove", "--help"]):
        run = campus(*args)
        assert run.code == 0
        assert "Running servers follow the change within 2 s" in " ".join(run.out.split())
    assert "end every session of theirs" in " ".join(
        campus("users", "remove", "--help").out.split()
    )

"""The users file: loading refuses anything unsafe, checks run off the loop, writes are atomic."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import argon2
import argon2.profiles
import pytest

from campus.accounts.directory import demo_accounts
from campus.accounts.users import (
    User,
    UserDirectory,
    UsersError,
    add_user,
    normalize_email,
    read_records,
    remove_user,
    validate_email,
)
from tests.support.servers import REPO

CHEAP = argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
ANN_HASH = CHEAP.hash("ann-secret")
#: Long enough, and on no list of common passwords.
STRONG = "mauve-lantern-orbit-42"


def write(path: Path, records: Any) -> Path:
    path.write_text(json.dumps(records), encoding="utf-8")
    return path


@pytest.fixture
def users_file(tmp_path: Path) -> Path:
    ann = {"email": "Ann@Example.com", "password_hash": ANN_HASH, "name": "Ann", "roles": ["x"]}
    bob = {"email": "bob@example.com", "password_hash": CHEAP.hash("bob-secret"), "year": 2}
    return write(tmp_path / "users.json", [ann, bob])


class RecordingExecutor(concurrent.futures.ThreadPoolExecutor):
    """Remembers the arguments and the thread of everything it runs."""

    def __init__(self) -> None:
        super().__init__(max_workers=1)
        self.calls: list[tuple[Any, ...]] = []
        self.threads: list[int] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        def run() -> Any:
            self.threads.append(threading.get_ident())
            return fn(*args, **kwargs)

        self.calls.append(args[:2])  # a check's hash and password (not its "gone" test)
        return super().submit(run)


def authenticate(directory: UserDirectory, email: str, password: str) -> dict[str, Any] | None:
    """The public record of the user the password signs in, or None."""
    user = asyncio.run(directory.authenticate(email, password))
    return None if user is None else user.public


def public_record(directory: UserDirectory, email: str) -> dict[str, Any] | None:
    user = directory.find(email)
    return None if user is None else user.public


# --- emails -------------------------------------------------------------------------------


def test_normalize_email_strips_and_lowercases() -> None:
    assert normalize_email("  Ann@Example.COM \n") == "ann@example.com"


@pytest.mark.parametrize(
    "email",
    ["", "ann", "@example.com", "ann@", "an n@example.com", "ann@exa\tmple.com",
     "ann\x00@example.com", "ann@example.com\x7f", "a@" + "b" * 253, "user@@example.com",
     "a@@b.c", "a..b@example.com", "ann@example", "ann@[192.0.2.1]", '"ann"@example.com',
     "ann@" + "b" * 64 + ".com"],
)  # fmt: skip
def test_validate_email_refuses(email: str) -> None:
    with pytest.raises(UsersError, match="invalid email"):
        validate_email(email)


def test_validate_email_returns_normalized() -> None:
    assert validate_email(" Ann@Example.com ") == "ann@example.com"
    assert validate_email("demo@campus.test") == "demo@campus.test"  # .test: for demos
    long = "a" * 64 + "@" + ".".join(["b" * 60] * 2) + ".example"
    assert validate_email(long) == long


def test_a_users_file_from_before_the_strict_check_still_loads(tmp_path: Path) -> None:
    """`users add` validates strictly; a file written by hand or by an older campus loads."""
    path = write(tmp_path / "u.json", [{"email": "ops@localhost", "password_hash": ANN_HASH}])
    assert len(UserDirectory.load(path)) == 1


# --- loading ------------------------------------------------------------------------------


@pytest.mark.slow
def test_missing_file_is_an_empty_directory(tmp_path: Path) -> None:
    directory = UserDirectory.load(tmp_path / "nope.json")
    assert len(directory) == 0
    assert directory.path == tmp_path / "nope.json"
    assert read_records(tmp_path / "nope.json") == []
    assert authenticate(directory, "a@b.c", "x") is None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        (b"\xff\xfe[", "not valid JSON"),
        ('{"email": "a@b.c"}', "expected a JSON array"),
        ("[1]", r"\[0\]: a user record must be a JSON object"),
        ([{"password_hash": ANN_HASH}], r"\[0\]: missing or non-string 'email'"),
        ([{"email": 5, "password_hash": ANN_HASH}], "missing or non-string 'email'"),
        ([{"email": "nope", "password_hash": ANN_HASH}], "invalid email"),
        ([{"email": "a@b.c"}], r"\[0\] \('a@b.c'\): missing 'password_hash'"),
        ([{"email": "a@b.c", "password_hash": "hunter2"}], "not an Argon2id hash"),
        ([{"email": "a@b.c", "password_hash": None}], "not an Argon2id hash"),
        ([{"email": "a@b.c", "password_hash": "$argon2id$garbage"}], "not an Argon2id hash"),
        (
            [{"email": "a@b.c", "password_hash": argon2.PasswordHasher(
                time_cost=1, memory_cost=8, parallelism=1, type=argon2.Type.I).hash("x")}],
            "not an Argon2id hash",
        ),
        (
            [{"email": "a@b.c", "password_hash": ANN_HASH},
             {"email": " A@B.C", "password_hash": ANN_HASH}],
            r"\[1\] \(' A@B.C'\): duplicate email \(also at \[0\]\)",
        ),
        (
            [{"email": "a@b.c", "password_hash": ANN_HASH},
             {"email": "p@b.c", "password_hash": ANN_HASH, "password": "hunter2"}],
            r"\[1\] \('p@b.c'\): plaintext 'password' field refused",
        ),
        ([{"email": "p@b.c", "Password": "hunter2"}], "plaintext 'password' field refused"),
    ],
)  # fmt: skip
def test_load_refuses_broken_files(tmp_path: Path, content: Any, message: str) -> None:
    path = tmp_path / "users.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        path.write_text(content)
    else:
        write(path, content)
    with pytest.raises(UsersError, match=message) as caught:
        UserDirectory.load(path)
    assert str(path) in str(caught.value)
    assert "\n" not in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_unreadable_path_is_a_users_error(tmp_path: Path) -> None:
    with pytest.raises(UsersError, match="cannot read"):
        UserDirectory.load(tmp_path)  # a directory


# --- authenticate -------------------------------------------------------------------------


def test_authenticate_returns_the_public_record(users_file: Path) -> None:
    directory = UserDirectory.load(users_file)
    assert len(directory) == 2
    user = authenticate(directory, "ann@example.com", "ann-secret")
    assert user == {"email": "Ann@Example.com", "name": "Ann", "roles": ["x"]}
    bob = authenticate(directory, "bob@example.com", "bob-secret")
    assert bob == {"email": "bob@example.com", "year": 2}


def test_the_public_record_is_made_once_per_load_and_never_holds_the_hash(
    users_file: Path,
) -> None:
    directory = UserDirectory.load(users_file)
    ann = directory.find("ann@example.com")
    assert ann is not None and ann.key == "ann@example.com"
    assert ann.public == {"email": "Ann@Example.com", "name": "Ann", "roles": ["x"]}
    assert directory.get("ann@example.com") is ann  # a lookup, no copy per request
    assert "password_hash" not in repr(ann) and ANN_HASH not in repr(ann)
    records = read_records(users_file)
    assert ann.public["roles"] is not records[0]["roles"]  # nothing shared with a reader


def test_no_password_field_reaches_the_public_record(tmp_path: Path) -> None:
    """SPEC: the record "without any password field", whatever the file calls it."""
    path = tmp_path / "users.json"
    record = {
        "email": "cy@example.com",
        "password_hash": ANN_HASH,
        "old_password_hash": ANN_HASH,
        "passwordHash": ANN_HASH,
        "password_reset_token": "reset-me",
        "profile": {"name": "Cy", "Password_Hash": ANN_HASH, "links": [{"password": "x"}]},
    }
    path.write_text(json.dumps([record]))
    cy = UserDirectory.load(path).find("cy@example.com")
    assert cy is not None
    assert cy.public == {"email": "cy@example.com", "profile": {"name": "Cy", "links": [{}]}}


@pytest.mark.parametrize("email", ["ANN@example.com", "  ann@EXAMPLE.com\t", "Ann@Example.com"])
def test_email_matches_case_and_space_insensitively(users_file: Path, email: str) -> None:
    directory = UserDirectory.load(users_file)
    assert authenticate(directory, email, "ann-secret") is not None
    assert public_record(directory, email) is not None


@pytest.mark.parametrize(
    "password", ["wrong", "", "ANN-SECRET", "ann-secret ", "\ud800", "x" * 5000]
)
def test_wrong_password_is_none(users_file: Path, password: str) -> None:
    assert authenticate(UserDirectory.load(users_file), "ann@example.com", password) is None


def test_public_record_unknown_is_none(users_file: Path) -> None:
    assert UserDirectory.load(users_file).find("who@example.com") is None


def test_unknown_email_still_verifies_with_the_users_parameters(users_file: Path) -> None:
    executor = RecordingExecutor()
    with executor:
        directory = UserDirectory.load(users_file, executor=executor)
        assert authenticate(directory, "who@example.com", "ann-secret") is None
        assert authenticate(directory, "ann@example.com", "wrong") is None
    (dummy_hash, _), (ann_hash, _) = executor.calls
    assert ann_hash == ANN_HASH
    assert dummy_hash != ANN_HASH
    assert argon2.extract_parameters(dummy_hash) == argon2.extract_parameters(ANN_HASH)


def test_unknown_emails_draw_their_dummy_like_the_users_parameter_sets(tmp_path: Path) -> None:
    """A file that mixes parameters (older hashes, a few stronger ones): each unknown email is
    always checked against one set's dummy, the same in every process reading the file, and
    the sets are drawn about as often as users have them, so a 403's time says nothing."""
    light = argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    heavy = argon2.PasswordHasher(time_cost=2, memory_cost=16, parallelism=1)
    records = [{"email": f"u{n}@example.com", "password_hash": light.hash("x")} for n in range(3)]
    records.append({"email": "strong@example.com", "password_hash": heavy.hash("x")})
    path = write(tmp_path / "u.json", records)
    one, other = UserDirectory.load(path).snapshot, UserDirectory.load(path).snapshot

    def cost(dummy: str) -> int:
        return argon2.extract_parameters(dummy).time_cost

    drawn = [cost(one.dummy_for(f"who{n}@example.com")) for n in range(2000)]
    assert drawn == [cost(other.dummy_for(f"who{n}@example.com")) for n in range(2000)]
    assert 0.18 < drawn.count(2) / len(drawn) < 0.32  # one user in four is "heavy"
    assert {dummy for _, dummy in one.dummies}.isdisjoint(
        record["password_hash"] for record in records
    )


@pytest.mark.slow
def test_empty_directory_dummy_uses_default_parameters(tmp_path: Path) -> None:
    executor = RecordingExecutor()
    with executor:
        directory = UserDirectory.load(write(tmp_path / "u.json", []), executor=executor)
        assert authenticate(directory, "who@example.com", "x") is None
    ((dummy_hash, _),) = executor.calls
    default = argon2.profiles.get_default_parameters()
    assert argon2.extract_parameters(dummy_hash) == default


def test_verify_runs_in_the_executor_not_on_the_loop(users_file: Path) -> None:
    executor = RecordingExecutor()
    loop_threads: list[int] = []

    async def login() -> User | None:
        loop_threads.append(threading.get_ident())
        return await directory.authenticate("ann@example.com", "ann-secret")

    with executor:
        directory = UserDirectory.load(users_file, executor=executor)
        assert asyncio.run(login()) is not None
    assert len(executor.threads) == 1
    assert executor.threads[0] != loop_threads[0]


def test_default_executor_is_off_the_loop_too(users_file: Path) -> None:
    directory = UserDirectory.load(users_file)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    async def main() -> User | None:
        task = asyncio.create_task(ticker())
        try:
            return await directory.authenticate("ann@example.com", "ann-secret")
        finally:
            task.cancel()

    assert asyncio.run(main()) is not None
    assert ticks > 1  # the loop kept running while the hash was checked


# --- add / remove -------------------------------------------------------------------------


def test_add_then_authenticate(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "users.json"
    with pytest.raises(UsersError, match=r"sub does not exist: create that directory first"):
        add_user(path, "new@example.com", STRONG, hasher=CHEAP)
    assert not path.parent.exists()  # never made on the operator's behalf
    path.parent.mkdir()
    public = add_user(path, " New@Example.com ", STRONG, name="New", roles=["r"], hasher=CHEAP)
    assert public == {"email": "new@example.com", "name": "New", "roles": ["r"]}
    (record,) = json.loads(path.read_text())
    assert record["email"] == "new@example.com"
    assert record["password_hash"].startswith("$argon2id$")
    assert STRONG not in path.read_text()
    assert path.read_text().endswith("}\n]\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert authenticate(UserDirectory.load(path), "NEW@example.com", STRONG) == public


def test_add_keeps_existing_records_and_fields(users_file: Path) -> None:
    add_user(users_file, "c@d.ee", STRONG, hasher=CHEAP)
    emails = [r["email"] for r in read_records(users_file)]
    assert emails == ["Ann@Example.com", "bob@example.com", "c@d.ee"]
    assert read_records(users_file)[1]["year"] == 2
    assert public_record(UserDirectory.load(users_file), "c@d.ee") == {
        "email": "c@d.ee",
        "roles": [],
    }


@pytest.mark.parametrize(
    ("email", "password", "name", "message"),
    [
        ("ANN@example.com ", STRONG, None, "already exists"),
        ("not-an-email", STRONG, None, "invalid email"),
        ("user@@example.com", STRONG, None, "invalid email"),
        ("c@d.e", "", None, "password is empty"),
        ("c@d.e", "x", None, "password too short: 1 characters, at least 15"),
        ("c@d.e", "fourteen-chars", None, "at least 15"),
        ("c@d.e", "x" * 1025, None, "password too long: at most 1024"),
        ("c@d.e", "passwordpassword", None, "common or breached"),
        ("c@d.e", "Iloveyou12345678", None, "common or breached"),
        ("someone.long@d.e", "Someone.Long@d.e", None, "must not be the email"),
        ("c@d.e", "a\udcff" + STRONG, None, "not valid UTF-8"),
        ("c@d.e", STRONG, "  ", "invalid name"),
        ("c@d.e", STRONG, "a\nb", "invalid name"),
    ],
)
def test_add_refuses_and_leaves_the_file_alone(
    users_file: Path, email: str, password: str, name: str | None, message: str
) -> None:
    before = users_file.read_bytes()
    with pytest.raises(UsersError, match=message):
        add_user(users_file, email, password, name=name, hasher=CHEAP)
    assert users_file.read_bytes() == before
    assert os.listdir(users_file.parent) == ["users.json"]  # no temp file left behind


def test_add_accepts_a_1024_character_password(tmp_path: Path) -> None:
    add_user(tmp_path / "u.json", "a@b.c", "x" * 1023 + "y", hasher=CHEAP)


def test_the_minimum_length_is_configurable_down_to_8(tmp_path: Path) -> None:
    add_user(tmp_path / "u.json", "a@b.c", "Zq7#vLp2", hasher=CHEAP, min_password_length=8)
    # Short common passwords are still refused: the list covers every length.
    for common in ("password", "password1", "iloveyou"):
        with pytest.raises(UsersError, match="common or breached"):
            add_user(tmp_path / "u.json", "d@b.c", common, hasher=CHEAP, min_password_length=8)


def test_add_refuses_a_non_argon2id_hasher(tmp_path: Path) -> None:
    argon2i = argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1, type=argon2.Type.I)
    with pytest.raises(UsersError, match="Argon2id"):
        add_user(tmp_path / "u.json", "a@b.c", STRONG, hasher=argon2i)
    assert not (tmp_path / "u.json").exists()


def test_add_to_a_broken_file_fails_and_leaves_it(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    path.write_text('[{"email": "a@b.c", "password": "plain"}]')
    before = path.read_bytes()
    with pytest.raises(UsersError, match="plaintext"):
        add_user(path, "c@d.e", STRONG, hasher=CHEAP)
    assert path.read_bytes() == before


def test_write_failure_leaves_the_original(
    users_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = users_file.read_bytes()

    def broken_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(UsersError, match="cannot write: No space left on device"):
        add_user(users_file, "c@d.ee", STRONG, hasher=CHEAP)
    assert users_file.read_bytes() == before
    assert os.listdir(users_file.parent) == ["users.json"]


def test_writes_keep_the_file_mode(users_file: Path) -> None:
    users_file.chmod(0o640)
    add_user(users_file, "c@d.ee", STRONG, hasher=CHEAP)
    assert stat.S_IMODE(users_file.stat().st_mode) == 0o640
    remove_user(users_file, "c@d.ee")
    assert stat.S_IMODE(users_file.stat().st_mode) == 0o640


def test_writes_through_a_symlink_keep_the_link(users_file: Path, tmp_path: Path) -> None:
    link = tmp_path / "link.json"
    link.symlink_to(users_file)
    add_user(link, "c@d.e", STRONG, hasher=CHEAP)
    assert link.is_symlink()
    assert len(read_records(users_file)) == 3


def test_remove(users_file: Path) -> None:
    remove_user(users_file, "  ANN@example.com")
    assert [r["email"] for r in read_records(users_file)] == ["bob@example.com"]


def test_remove_missing_user_leaves_the_file(users_file: Path, tmp_path: Path) -> None:
    before = users_file.read_bytes()
    with pytest.raises(UsersError, match=r"no user 'who@example\.com'"):
        remove_user(users_file, "who@example.com")
    assert users_file.read_bytes() == before
    with pytest.raises(UsersError, match="no user"):
        remove_user(tmp_path / "absent" / "u.json", "a@b.c")
    assert not (tmp_path / "absent").exists()


@pytest.mark.slow
def test_the_shipped_dev_file_has_the_demo_account() -> None:
    directory = UserDirectory.load(REPO / "config" / "users.dev.json")
    user = authenticate(directory, "demo@campus.test", "campus-demo")
    assert user == {"email": "demo@campus.test", "name": "Demo Student", "roles": ["student"]}
    (record,) = read_records(REPO / "config" / "users.dev.json")
    default = argon2.profiles.get_default_parameters()
    assert argon2.extract_parameters(record["password_hash"]) == default


# --- hash upgrades and the demo account ------------------------------------------------------

ROOMIER = argon2.PasswordHasher(time_cost=2, memory_cost=16, parallelism=1)


def upgrade_run(directory: UserDirectory, email: str, password: str) -> Any:
    async def run() -> Any:
        user = await directory.authenticate(email, password)
        await directory.wait_for_upgrades()
        return user

    return asyncio.run(run())


def test_a_hash_with_other_parameters_is_upgraded_at_login(users_file: Path) -> None:
    directory = UserDirectory.load(users_file, hasher=ROOMIER)
    assert upgrade_run(directory, "ann@example.com", "ann-secret") is not None
    ann, bob = read_records(users_file)
    params = argon2.extract_parameters(ann["password_hash"])
    assert (params.time_cost, params.memory_cost, params.parallelism) == (2, 16, 1)
    assert bob["password_hash"] == read_records(users_file)[1]["password_hash"]
    assert argon2.extract_parameters(bob["password_hash"]).memory_cost == 8  # not logged in
    # The new hash verifies, in this process and in the next one.
    assert upgrade_run(directory, "ann@example.com", "ann-secret") is not None
    assert authenticate(UserDirectory.load(users_file), "ann@example.com", "ann-secret")
    # A wrong password upgrades nothing.
    before = users_file.read_bytes()
    assert upgrade_run(directory, "bob@example.com", "wrong") is None
    assert users_file.read_bytes() == before


def test_a_hash_with_the_configured_parameters_is_left_alone(users_file: Path) -> None:
    before = users_file.read_bytes()
    directory = UserDirectory.load(users_file, hasher=CHEAP)
    assert upgrade_run(directory, "ann@example.com", "ann-secret") is not None
    assert users_file.read_bytes() == before


def test_a_file_this_process_cannot_write_is_reported_once(
    users_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    if os.geteuid() == 0:
        # root writes anyway: a directory that is gone is what a read-only mount looks like
        directory = UserDirectory.load(users_file, hasher=ROOMIER)
        directory.path = users_file.parent / "gone" / "users.json"
    else:
        users_file.parent.chmod(0o555)
        directory = UserDirectory.load(users_file, hasher=ROOMIER)
    before = users_file.read_bytes()
    with caplog.at_level("WARNING", logger="campus.users"):
        for email, password in [
            ("ann@example.com", "ann-secret"),
            ("bob@example.com", "bob-secret"),
        ]:
            assert upgrade_run(directory, email, password) is not None
    users_file.parent.chmod(0o755)
    assert users_file.read_bytes() == before
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "not upgraded" in warnings[0].getMessage()


@pytest.mark.slow
def test_the_demo_account_is_found_by_email_and_by_a_copied_hash(tmp_path: Path) -> None:
    shipped = REPO / "config" / "users.dev.json"
    (demo,) = read_records(shipped)
    renamed = {**demo, "email": "ops@example.edu"}
    other = {"email": "ann@example.edu", "password_hash": ANN_HASH}
    path = write(tmp_path / "u.json", [other, renamed])

    def found(path: Path) -> list[str]:
        return demo_accounts(UserDirectory.load(path).snapshot.users.values(), shipped)

    assert found(path) == ["ops@example.edu"]
    assert found(shipped) == ["demo@campus.test"]
    assert found(write(tmp_path / "v.json", [other])) == []

"""The users file: a JSON array of records with Argon2id hashes.

Loaded once into memory at startup; password checks run in an executor so a login never
stalls the event loop, and unknown emails pay for a verify too, so timing does not tell
which emails exist. A hash made with other Argon2 parameters than the configured ones is
upgraded at the user's next successful login, written back atomically when this process
may write the file, and otherwise reported once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import copy
import fcntl
import json
import logging
import os
import secrets
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import argon2
import email_validator
from argon2 import PasswordHasher
from argon2.exceptions import Argon2Error, InvalidHashError, VerificationError

from campus.accounts.passwords import MAX_PASSWORD as MAX_PASSWORD
from campus.accounts.passwords import PasswordRejected, check_password
from campus.config.schema import Argon2Params

MAX_EMAIL = 254
NEW_FILE_MODE = 0o600
#: The development demo account (config/users.dev.json); production refuses a file holding it.
DEMO_EMAIL = "demo@campus.test"
DEMO_PASSWORD = "campus-demo"

log = logging.getLogger("campus.users")

StrPath = str | os.PathLike[str]
T = TypeVar("T")
OptionalExecutor = concurrent.futures.Executor | None


class UsersError(Exception):
    """Anything wrong with the users file or a change to it; str() is one line."""


def normalize_email(email: str) -> str:
    """The key users are matched by: case and surrounding spaces never matter."""
    return email.strip().lower()


def _show(text: str) -> str:
    """A safe, bounded rendering of user input for one-line error messages."""
    return repr(text[:80] + "…" if len(text) > 80 else text)


def validate_email(email: str) -> str:
    """The normalized email of a new account, or UsersError saying what is wrong with it.

    Syntax only, by email-validator (no DNS lookup): ``a@@b.c``, two dots in a row, a
    space, a label over 63 characters are refused. ``.test`` domains are allowed, for demos.
    """
    _plausible_email(email)
    try:
        checked = email_validator.validate_email(
            email.strip(), check_deliverability=False, test_environment=True
        )
    except email_validator.EmailNotValidError as err:
        raise UsersError(f"invalid email {_show(email)}: {err}") from None
    return normalize_email(checked.normalized)


def _plausible_email(email: str) -> str:
    """The loose check a users file must pass: an @ with something on each side.

    Files written before the stricter check of `users add` keep loading.
    """
    normal = normalize_email(email)
    local, at, domain = normal.rpartition("@")
    if not at:
        problem = "no '@'"
    elif not local or not domain:
        problem = "empty part before or after '@'"
    elif any(ch.isspace() or not ch.isprintable() for ch in normal):
        problem = "whitespace or control characters inside"
    elif len(normal) > MAX_EMAIL:
        problem = f"longer than {MAX_EMAIL} characters"
    else:
        return normal
    raise UsersError(f"invalid email {_show(email)}: {problem}")


def _hash_parameters(value: Any) -> argon2.Parameters | None:
    """The parameters of an Argon2id hash string, or None if it is not one."""
    if not isinstance(value, str) or not value.startswith("$argon2id$"):
        return None
    try:
        params = argon2.extract_parameters(value)
    except InvalidHashError:
        return None
    return params if params.type is argon2.Type.ID else None


def _validated(raw: Any, path: Path) -> list[dict[str, Any]]:
    """Check the decoded file; errors name the file and the record."""
    if not isinstance(raw, list):
        raise UsersError(f"{path}: expected a JSON array of user records")
    seen: dict[str, int] = {}
    for index, record in enumerate(raw):
        where = f"{path}[{index}]"
        if not isinstance(record, dict):
            raise UsersError(f"{where}: a user record must be a JSON object")
        email = record.get("email")
        if isinstance(email, str):
            where = f"{where} ({_show(email)})"
        if any(key.lower() == "password" for key in record):
            raise UsersError(
                f"{where}: plaintext 'password' field refused; "
                "store only password_hash (use `campus users add`)"
            )
        if not isinstance(email, str):
            raise UsersError(f"{where}: missing or non-string 'email'")
        try:
            normal = _plausible_email(email)
        except UsersError as err:
            raise UsersError(f"{where}: {err}") from None
        if normal in seen:
            raise UsersError(f"{where}: duplicate email (also at [{seen[normal]}])")
        seen[normal] = index
        if "password_hash" not in record:
            raise UsersError(f"{where}: missing 'password_hash'")
        if _hash_parameters(record["password_hash"]) is None:
            raise UsersError(f"{where}: 'password_hash' is not an Argon2id hash")
    return raw


def read_records(path: StrPath) -> list[dict[str, Any]]:
    """The validated records of the users file; [] when it does not exist."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as err:
        raise UsersError(f"{path}: cannot read: {err.strerror or err}") from None
    try:
        raw = json.loads(data.decode("utf-8-sig"))
    except json.JSONDecodeError as err:
        raise UsersError(f"{path}: not valid JSON (line {err.lineno}: {err.msg})") from None
    except (ValueError, RecursionError):  # not UTF-8, absurd nesting
        raise UsersError(f"{path}: not valid JSON") from None
    return _validated(raw, path)


def password_hasher(params: Argon2Params) -> PasswordHasher:
    """The hasher for new passwords and upgrades, with the configured cost."""
    return PasswordHasher(
        time_cost=params.time_cost, memory_cost=params.memory_kib, parallelism=params.parallelism
    )


def _public(record: dict[str, Any]) -> dict[str, Any]:
    """A copy safe to hand out: every field but the hash, nested values not shared."""
    return copy.deepcopy({k: v for k, v in record.items() if k != "password_hash"})


def _verify(password_hash: str, password: bytes) -> bool:
    """Runs in the executor; any failure is a plain "no"."""
    try:
        return PasswordHasher().verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


class UserDirectory:
    """The users file loaded into memory, with password checks off the event loop."""

    path: Path

    def __init__(
        self,
        path: StrPath,
        records: list[dict[str, Any]],
        *,
        executor: OptionalExecutor = None,
        hasher: PasswordHasher | None = None,
    ) -> None:
        self.path = Path(path)
        self._executor = executor
        #: Hashes new passwords; a stored hash it would make differently is upgraded at login.
        self.hasher = hasher
        self._upgrades: set[asyncio.Task[None]] = set()  # strong references until done
        self._upgrade_blocked = False
        self._by_email = {normalize_email(r["email"]): r for r in records}
        # Unknown emails verify against this, with the users' own cost, so a miss
        # takes as long as a wrong password.
        params = _hash_parameters(records[0]["password_hash"]) if records else None
        hasher = PasswordHasher.from_parameters(params) if params else PasswordHasher()
        self._dummy_hash = hasher.hash(secrets.token_bytes(32))

    @classmethod
    def load(
        cls,
        path: StrPath,
        *,
        executor: OptionalExecutor = None,
        hasher: PasswordHasher | None = None,
    ) -> UserDirectory:
        """Read and validate the file; a missing file is an empty directory."""
        return cls(path, read_records(path), executor=executor, hasher=hasher)

    def __len__(self) -> int:
        return len(self._by_email)

    def public_record(self, email: str) -> dict[str, Any] | None:
        """The user's record without its hash, with no password check."""
        record = self._by_email.get(normalize_email(email))
        return None if record is None else _public(record)

    async def authenticate(self, email: str, password: str) -> dict[str, Any] | None:
        """The public record if the password matches, else None (never raises for bad input)."""
        record = self._by_email.get(normalize_email(email))
        target = self._dummy_hash if record is None else record["password_hash"]
        secret = password.encode("utf-8", "surrogatepass")  # JSON may carry lone surrogates
        loop = asyncio.get_running_loop()
        ok = await loop.run_in_executor(self._executor, _verify, target, secret)
        if not ok or record is None:
            return None
        self._upgrade_later(record, secret)
        return _public(record)

    def demo_accounts(self, shipped: StrPath | None = None) -> list[str]:
        """Emails whose password is the published demo password (production refuses them).

        Checked: the demo email, and any record sharing a hash with the shipped development
        file (a copy under another name). A check per record would cost a hash each.
        """
        shipped_hashes = set()
        if shipped is not None:
            with contextlib.suppress(UsersError):
                shipped_hashes = {r["password_hash"] for r in read_records(shipped)}
        found = []
        for email, record in self._by_email.items():
            suspect = email == DEMO_EMAIL or record["password_hash"] in shipped_hashes
            if suspect and _verify(record["password_hash"], DEMO_PASSWORD.encode()):
                found.append(email)
        return found

    def _upgrade_later(self, record: dict[str, Any], secret: bytes) -> None:
        """Rehash with the configured parameters after the answer; never delays a login."""
        if self.hasher is None or self._upgrade_blocked:
            return
        if not self.hasher.check_needs_rehash(record["password_hash"]):
            return
        task = asyncio.ensure_future(self._upgrade(record, secret))
        self._upgrades.add(task)
        task.add_done_callback(self._upgrades.discard)

    async def _upgrade(self, record: dict[str, Any], secret: bytes) -> None:
        assert self.hasher is not None
        old = record["password_hash"]
        loop = asyncio.get_running_loop()
        try:
            new = await loop.run_in_executor(self._executor, self.hasher.hash, secret)
            email = normalize_email(record["email"])
            await loop.run_in_executor(None, _replace_hash, self.path, email, old, new)
        except (UsersError, Argon2Error) as err:
            if not self._upgrade_blocked:
                self._upgrade_blocked = True
                log.warning(
                    "password hashes made with other Argon2 parameters are not upgraded: %s",
                    err,
                )
            return
        if record["password_hash"] == old:
            record["password_hash"] = new
        log.info("upgraded the password hash of one user to the configured Argon2 parameters")

    async def wait_for_upgrades(self) -> None:
        """Let hash upgrades in flight finish (at shutdown, and in tests)."""
        while self._upgrades:
            await asyncio.gather(*self._upgrades, return_exceptions=True)


def _replace_hash(path: StrPath, email: str, old: str, new: str) -> None:
    """Swap one user's hash, unless the file changed it meanwhile (e.g. a new password)."""

    def change(records: list[dict[str, Any]]) -> None:
        for record in records:
            if normalize_email(record["email"]) == email and record["password_hash"] == old:
                record["password_hash"] = new

    if not os.path.isfile(path):
        raise UsersError(f"{path}: cannot write: the file is gone")
    _modify(path, change, create=False)


def _write_atomic(target: Path, records: list[dict[str, Any]]) -> None:
    """Temp file in the same directory, fsync, rename: readers see old or new, never half."""
    try:
        st: os.stat_result | None = os.stat(target)
    except FileNotFoundError:
        st = None
    data = (json.dumps(records, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), NEW_FILE_MODE if st is None else stat.S_IMODE(st.st_mode))
            if st is not None and (st.st_uid, st.st_gid) != (os.geteuid(), os.getegid()):
                # Root editing the service's file must not leave it owned by root.
                with contextlib.suppress(PermissionError):
                    os.fchown(f.fileno(), st.st_uid, st.st_gid)
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _modify(path: StrPath, change: Callable[[list[dict[str, Any]]], T], *, create: bool) -> T:
    """Lock, read, apply change(records) in place, write; the file is untouched on error."""
    target = Path(os.path.realpath(path))  # keep a symlinked users file a symlink
    try:
        if create:
            target.parent.mkdir(parents=True, exist_ok=True)
        elif not target.parent.is_dir():
            return change([])  # nothing to change in a file that cannot exist
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            fcntl.flock(dir_fd, fcntl.LOCK_EX)  # one `campus users` change at a time
            records = read_records(target)
            result = change(records)
            _write_atomic(target, records)
            os.fsync(dir_fd)  # make the rename itself durable
            return result
        finally:
            os.close(dir_fd)  # releases the lock
    except OSError as err:
        raise UsersError(f"{path}: cannot write: {err.strerror or err}") from None


def add_user(
    path: StrPath,
    email: str,
    password: str,
    *,
    name: str | None = None,
    roles: list[str] | None = None,
    hasher: PasswordHasher | None = None,
    min_password_length: int = 15,
) -> dict[str, Any]:
    """Append a user with an Argon2id hash; returns the public record.

    The password must pass the policy (campus.accounts.passwords); the error names the rule.
    """
    normal = validate_email(email)
    try:
        secret = password.encode("utf-8")  # a lone surrogate could never be typed at login
    except UnicodeEncodeError:
        raise UsersError("password is not valid UTF-8 text") from None
    try:
        check_password(password, min_length=min_password_length, email=normal)
    except PasswordRejected as err:
        raise UsersError(str(err)) from None
    if name is not None:
        name = name.strip()
        if not name or not name.isprintable():
            raise UsersError(f"invalid name {_show(name)}: empty or has control characters")
    record: dict[str, Any] = {"email": normal}
    if name is not None:
        record["name"] = name
    record["roles"] = list(roles or [])

    def change(records: list[dict[str, Any]]) -> dict[str, Any]:
        if any(normalize_email(r["email"]) == normal for r in records):
            raise UsersError(f"{normal} already exists in {path}")
        try:
            record["password_hash"] = (hasher or PasswordHasher()).hash(secret)
        except Argon2Error as err:
            raise UsersError(f"cannot hash the password: {err}") from None
        if _hash_parameters(record["password_hash"]) is None:
            raise UsersError("the hasher must produce Argon2id hashes")
        records.append(record)
        return _public(record)

    return _modify(path, change, create=True)


def remove_user(path: StrPath, email: str) -> None:
    """Delete the user's record; UsersError if there is none."""
    normal = normalize_email(email)

    def change(records: list[dict[str, Any]]) -> None:
        kept = [r for r in records if normalize_email(r["email"]) != normal]
        if len(kept) == len(records):
            raise UsersError(f"no user {_show(normal)} in {path}")
        records[:] = kept

    _modify(path, change, create=False)

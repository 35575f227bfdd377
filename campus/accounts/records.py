"""Reading the users file: a JSON array of records with Argon2id hashes, validated whole.

A file is all or nothing: one bad record refuses the file, with an error naming the file and
the record (never its secrets), so a running server keeps the last good one instead.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import argon2
import email_validator
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError

from campus.accounts.emails import normalize_email
from campus.config.schema import Argon2Params

MAX_EMAIL = 254
#: The development demo account (config/users.dev.json); production refuses a file holding it.
DEMO_EMAIL = "demo@campus.test"
DEMO_PASSWORD = "campus-demo"

StrPath = str | os.PathLike[str]


class UsersError(Exception):
    """Anything wrong with the users file or a change to it; str() is one line."""


def show(text: str) -> str:
    """A safe, bounded rendering of user input for one-line error messages."""
    return repr(text[:80] + "…" if len(text) > 80 else text)


def validate_email(email: str) -> str:
    """The email of a new account as the file stores it, or UsersError saying what is wrong.

    Syntax only, by email-validator (no DNS lookup): ``a@@b.c``, two dots in a row, a
    space, a label over 63 characters are refused. ``.test`` domains are allowed, for demos.
    """
    plausible_email(email)
    try:
        checked = email_validator.validate_email(
            email.strip(), check_deliverability=False, test_environment=True
        )
    except email_validator.EmailNotValidError as err:
        raise UsersError(f"invalid email {show(email)}: {err}") from None
    return normalize_email(checked.normalized)


def plausible_email(email: str) -> str:
    """The loose check a users file must pass: an @ with something on each side.

    Files written before the stricter check of `users add` keep loading.
    """
    normal = normalize_email(email)
    local, at, domain = normal.rpartition("@")
    if not at:
        problem = "no '@'"
    elif not local or not domain:
        problem = "empty part before or after '@'"
    elif " " in normal or not normal.isprintable():  # any other space is not printable
        problem = "whitespace or control characters inside"
    elif len(normal) > MAX_EMAIL:
        problem = f"longer than {MAX_EMAIL} characters"
    else:
        return normal
    raise UsersError(f"invalid email {show(email)}: {problem}")


#: An Argon2id hash in PHC form: the parameters, then the salt and the hash in base64.
_ARGON2ID = re.compile(
    r"(\$argon2id\$v=\d+\$m=\d+,t=\d+,p=\d+)\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)"
)
#: Parameters by the hash's parameter part and the lengths of its salt and hash: a file holds
#: a handful of parameter sets, and parsing each hash would cost a reload of a large file.
_PARAMETERS: dict[tuple[str, int, int], argon2.Parameters] = {}


def hash_parameters(value: Any) -> argon2.Parameters | None:
    """The parameters of an Argon2id hash string, or None if it is not one."""
    match = _ARGON2ID.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        return None
    key = (match[1], len(match[2]), len(match[3]))
    params = _PARAMETERS.get(key)
    if params is None:
        try:
            params = argon2.extract_parameters(value)
        except InvalidHashError:
            return None
        if len(_PARAMETERS) < 64:  # hand-edited files could hold any number of sets
            _PARAMETERS[key] = params
    return params


def password_hasher(params: Argon2Params) -> PasswordHasher:
    """The hasher for new passwords and upgrades, with the configured cost."""
    return PasswordHasher(
        time_cost=params.time_cost, memory_cost=params.memory_kib, parallelism=params.parallelism
    )


def validated(raw: Any, path: StrPath) -> list[dict[str, Any]]:
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
            where = f"{where} ({show(email)})"
        if any(key.lower() == "password" for key in record):
            raise UsersError(
                f"{where}: plaintext 'password' field refused; "
                "store only password_hash (use `campus users add`)"
            )
        if not isinstance(email, str):
            raise UsersError(f"{where}: missing or non-string 'email'")
        try:
            normal = plausible_email(email)
        except UsersError as err:
            raise UsersError(f"{where}: {err}") from None
        if normal in seen:
            raise UsersError(f"{where}: duplicate email (also at [{seen[normal]}])")
        seen[normal] = index
        if "password_hash" not in record:
            raise UsersError(f"{where}: missing 'password_hash'")
        if hash_parameters(record["password_hash"]) is None:
            raise UsersError(f"{where}: 'password_hash' is not an Argon2id hash")
    return raw


def parse_records(data: bytes, path: StrPath) -> list[dict[str, Any]]:
    """The validated records of the users file's bytes."""
    try:
        raw = json.loads(data.decode("utf-8-sig"))  # a BOM some editors write is fine
    except json.JSONDecodeError as err:
        raise UsersError(f"{path}: not valid JSON (line {err.lineno}: {err.msg})") from None
    except (ValueError, RecursionError):  # not UTF-8, absurd nesting
        raise UsersError(f"{path}: not valid JSON") from None
    return validated(raw, path)


def read_bytes(path: StrPath) -> bytes | None:
    """The file's bytes; None when it does not exist."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise UsersError(f"{path}: cannot read: {err.strerror or err}") from None


def read_records(path: StrPath) -> list[dict[str, Any]]:
    """The validated records of the users file; [] when it does not exist."""
    data = read_bytes(path)
    return [] if data is None else parse_records(data, path)


#: A file modified this recently may change again within the same modification time (the
#: clock the file system stamps with is coarse): such a version is read again at the next
#: poll, and compared by content.
RACY_SECONDS = 2.0

#: st_dev, st_ino, st_mtime_ns, st_size, st_ctime_ns. The change time too: an in-place copy
#: that keeps the size and sets the old modification time (``cp -p``, ``rsync --inplace -t``)
#: still moves it, and nothing can set it back.
Identity = tuple[int, int, int, int, int]


@dataclass(frozen=True, slots=True)
class FileVersion:
    """Which version of the users file was read: None for a file that was not there."""

    identity: Identity | None
    digest: bytes  # SHA-256 of the bytes read (empty for a missing file)
    racy: bool = False  # modified too recently for its identity to tell every later change


MISSING = FileVersion(None, b"")


def file_identity(path: StrPath) -> Identity | None:
    """The file's identity, size and times: a rename or a rewrite changes it."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as err:
        raise UsersError(f"{path}: cannot read: {err.strerror or err}") from None
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size, st.st_ctime_ns)


def read_version(path: StrPath) -> tuple[bytes | None, FileVersion]:
    """The file's bytes (None when missing) and the version they are.

    The identity is taken before the read: a change after it shows as a new identity at the
    next poll, never as a version that was missed.
    """
    identity = file_identity(path)
    data = None if identity is None else read_bytes(path)
    if data is None:
        return None, MISSING
    assert identity is not None
    racy = time.time() - identity[2] / 1e9 < RACY_SECONDS
    return data, FileVersion(identity, hashlib.sha256(data).digest(), racy)

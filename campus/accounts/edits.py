"""Changing the users file: add a user, remove one, swap a hash for an upgraded one.

Every change locks, reads and validates the file, applies itself, and writes the whole file
atomically (temp file in the same directory, fsync, rename): a reader — a running server
polling the file — sees the old file or the new one, never half of either. On any error the
file is left as it was. The file written is the symlink's target (:func:`resolved`), so a
symlinked users file stays a symlink; a directory that does not exist is never created.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

from argon2 import PasswordHasher
from argon2.exceptions import Argon2Error

from campus.accounts.emails import lookalike_key, normalize_email
from campus.accounts.passwords import PasswordRejected, check_password
from campus.accounts.records import (
    StrPath,
    UsersError,
    hash_parameters,
    read_records,
    show,
    validate_email,
)

NEW_FILE_MODE = 0o600

T = TypeVar("T")


def resolved(path: StrPath) -> Path:
    """The file a change writes: absolute, symlinks followed."""
    return Path(os.path.realpath(path))


def check_directory(path: StrPath) -> None:
    """UsersError unless the users file's directory exists: a change never creates one (a
    users file in a directory nobody made is a file no server reads)."""
    directory = resolved(path).parent
    if not directory.is_dir():
        raise UsersError(
            f"{directory} does not exist: create that directory first, or point [users] file"
            f" (CAMPUS_USERS_FILE) at the users file you mean; not creating {path}"
        )


def public(record: dict[str, Any]) -> dict[str, Any]:
    """The record without any password field: what /login and /api/me answer.

    Not only ``password_hash``: a field whose name says "password", at any depth
    (``old_password_hash``, ``passwordHash``, ``password_reset_token``), is left out too.
    """
    return cast(dict[str, Any], _without_passwords(record))


def _without_passwords(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            key: _without_passwords(item)
            for key, item in value.items()
            if "password" not in key.lower()
        }
    if isinstance(value, list):
        return [_without_passwords(item) for item in value]
    return value


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
    An address that only looks like an existing one (``bob@`` in fullwidth letters, beside
    ``bob@``) is refused.
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
            raise UsersError(f"invalid name {show(name)}: empty or has control characters")
    record: dict[str, Any] = {"email": normal}
    if name is not None:
        record["name"] = name
    record["roles"] = list(roles or [])

    def change(records: list[dict[str, Any]]) -> dict[str, Any]:
        refuse_existing(records, normal, path)
        try:
            record["password_hash"] = (hasher or PasswordHasher()).hash(secret)
        except Argon2Error as err:
            raise UsersError(f"cannot hash the password: {err}") from None
        if hash_parameters(record["password_hash"]) is None:
            raise UsersError("the hasher must produce Argon2id hashes")
        records.append(record)
        return public(record)

    return _modify(path, change, create=True)


def refuse_existing(records: list[dict[str, Any]], email: str, path: StrPath) -> None:
    """UsersError if *email* is an account of *records*, or looks like one (NFKC)."""
    key, lookalike = normalize_email(email), lookalike_key(email)
    for record in records:
        if normalize_email(record["email"]) == key:
            raise UsersError(f"{key} already exists in {path}")
        if lookalike_key(record["email"]) == lookalike:
            raise UsersError(
                f"{key} looks like {record['email']}, which exists in {path}:"
                " refused, so that nobody can pass for another user"
            )


def remove_user(path: StrPath, email: str) -> str:
    """Delete the user's record; returns its key. UsersError if there is none."""
    normal = normalize_email(email)

    def change(records: list[dict[str, Any]]) -> None:
        kept = [r for r in records if normalize_email(r["email"]) != normal]
        if len(kept) == len(records):
            raise UsersError(f"no user {show(normal)} in {path}")
        records[:] = kept

    _modify(path, change, create=False)
    return normal


def replace_hash(path: StrPath, key: str, old: str, new: str) -> None:
    """Swap one user's hash, unless the file changed it meanwhile (e.g. a new password)."""

    def change(records: list[dict[str, Any]]) -> None:
        for record in records:
            if normalize_email(record["email"]) == key and record["password_hash"] == old:
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
    """Lock, read, apply change(records) in place, write; the file is untouched on error.

    ``create``: the file may be new (its directory must exist all the same).
    """
    target = resolved(path)
    if not target.parent.is_dir():
        if create:
            check_directory(path)
        return change([])  # nothing to change in a file that cannot exist
    try:
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

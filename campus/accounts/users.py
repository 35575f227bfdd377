"""The users file and its accounts, by the names the rest of campus imports.

The work is done in five modules, each with one job:

- :mod:`campus.accounts.emails`: the one normalisation of an address (the key of an account);
- :mod:`campus.accounts.records`: reading and validating the file;
- :mod:`campus.accounts.edits`: changing it atomically (``campus users add/remove``, upgrades);
- :mod:`campus.accounts.directory`: the live directory, the users by key, the password check;
- :mod:`campus.accounts.follow`: each process following the file as it changes.
"""

from campus.accounts.directory import User, UserDirectory
from campus.accounts.edits import add_user, remove_user, resolved
from campus.accounts.emails import lookalike_key, normalize_email
from campus.accounts.follow import UsersFileFollower
from campus.accounts.passwords import MAX_PASSWORD
from campus.accounts.records import (
    DEMO_EMAIL,
    DEMO_PASSWORD,
    MAX_EMAIL,
    UsersError,
    password_hasher,
    read_records,
    validate_email,
)

__all__ = [
    "DEMO_EMAIL",
    "DEMO_PASSWORD",
    "MAX_EMAIL",
    "MAX_PASSWORD",
    "User",
    "UserDirectory",
    "UsersError",
    "UsersFileFollower",
    "add_user",
    "lookalike_key",
    "normalize_email",
    "password_hasher",
    "read_records",
    "remove_user",
    "resolved",
    "validate_email",
]

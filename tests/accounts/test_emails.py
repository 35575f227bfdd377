"""One normalisation of emails for login, the users file and `users add`: every spelling that
`users add` would store reaches the account; lookalikes are refused; odd input is never a 500.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from campus.accounts.emails import lookalike_key, normalize_email
from campus.accounts.users import UsersError, add_user, read_records, validate_email
from campus.config import Config, LoginConfig
from tests.support.apps import CHEAP_HASHER, PASSWORD, Fetch, make_config

#: Long enough, and on no list of common passwords.
STRONG = "mauve-lantern-orbit-42"
FULLWIDTH_BOB = "\uff42\uff4f\uff42"  # "bob" in fullwidth letters


@pytest.mark.parametrize(
    ("spelling", "key"),
    [
        ("  Ann@Campus.TEST\n", "ann@campus.test"),
        ("jose\u0301@example.edu", "jos\u00e9@example.edu"),  # NFD: e + combining acute
        ("JOSE\u0301@EXAMPLE.edu", "jos\u00e9@example.edu"),
        ("bob@xn--exmple-cua.edu", "bob@ex\u00e4mple.edu"),  # punycode
        ("bob@EXA\u0308MPLE.EDU", "bob@ex\u00e4mple.edu"),  # NFD and upper case in the domain
        ("bob@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.edu", "bob@example.edu"),  # fullwidth
        (f"{FULLWIDTH_BOB}@example.edu", f"{FULLWIDTH_BOB}@example.edu"),  # NFC keeps it
    ],
)
def test_every_spelling_has_one_key(spelling: str, key: str) -> None:
    assert normalize_email(spelling) == key
    assert normalize_email(key) == key  # the key is its own key


@pytest.mark.parametrize(
    "odd",
    ["", "@", "no-at", "a@b@c.d", "\ud800@example.edu", "a@\udfff.edu", "a@xn--", "a@xn--zz.a",
     "a@-bad-.com", "a@.", "a@" + "\u00e9" * 252, "a@" + "b" * 300, "\x00@\x00", "a@\u200b.com"],
)  # fmt: skip
def test_odd_input_never_raises(odd: str) -> None:
    key = normalize_email(odd)
    assert isinstance(key, str) and normalize_email(key) == key


def test_users_add_stores_the_key() -> None:
    assert validate_email(" JOSE\u0301@Example.EDU ") == "jos\u00e9@example.edu"
    assert validate_email("Bob@xn--exmple-cua.edu") == "bob@ex\u00e4mple.edu"


def test_lookalikes_share_a_lookalike_key_only() -> None:
    assert normalize_email(f"{FULLWIDTH_BOB}@example.edu") != "bob@example.edu"
    assert lookalike_key(f"{FULLWIDTH_BOB}@example.edu") == lookalike_key("bob@example.edu")
    assert lookalike_key("ann@example.edu") != lookalike_key("bob@example.edu")


@pytest.mark.parametrize(
    ("existing", "new", "message"),
    [
        ("bob@example.edu", f"{FULLWIDTH_BOB}@example.edu", "looks like bob@example.edu"),
        (f"{FULLWIDTH_BOB}@example.edu", "bob@example.edu", "looks like"),
        ("bob@ex\u00e4mple.edu", "BOB@xn--exmple-cua.edu", "already exists"),
        ("jos\u00e9@example.edu", "jose\u0301@example.edu", "already exists"),
        ("\ufb01ona@example.edu", "fiona@example.edu", "looks like"),  # the "fi" ligature
    ],
)
def test_users_add_refuses_an_address_that_collides(
    tmp_path: Path, existing: str, new: str, message: str
) -> None:
    path = tmp_path / "users.json"
    path.write_text(json.dumps([{"email": existing, "password_hash": CHEAP_HASHER.hash("x")}]))
    before = path.read_bytes()
    with pytest.raises(UsersError, match=message):
        add_user(path, new, STRONG, hasher=CHEAP_HASHER)
    assert path.read_bytes() == before


def test_users_add_takes_a_new_address(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    add_user(path, "bob@example.edu", STRONG, hasher=CHEAP_HASHER)
    add_user(path, "bobby@example.edu", STRONG, hasher=CHEAP_HASHER)
    assert [r["email"] for r in read_records(path)] == ["bob@example.edu", "bobby@example.edu"]


# --- at login ------------------------------------------------------------------------------

ACCOUNTS = ["jos\u00e9@example.edu", "bob@ex\u00e4mple.edu", "Ann@Campus.test"]


@pytest.fixture
def config(tmp_path: Path) -> Config:
    """These accounts, and no throttling: refused logins are what these tests make."""
    path = tmp_path / "users.json"
    records = [{"email": e, "password_hash": CHEAP_HASHER.hash(PASSWORD)} for e in ACCOUNTS]
    path.write_text(json.dumps(records))
    return dataclasses.replace(make_config(path), login=LoginConfig(max_failures=1000))


async def login(fetch: Fetch, email: str) -> tuple[int, object]:
    body = json.dumps({"email": email, "password": PASSWORD})
    response = await fetch("/login", method="POST", body=body)
    return response.code, json.loads(response.body)


@pytest.mark.parametrize(
    ("spelling", "account"),
    [
        ("jose\u0301@example.edu", "jos\u00e9@example.edu"),
        (" JOS\u00c9@EXAMPLE.EDU", "jos\u00e9@example.edu"),
        ("bob@xn--exmple-cua.edu", "bob@ex\u00e4mple.edu"),
        ("BOB@XN--EXMPLE-CUA.EDU", "bob@ex\u00e4mple.edu"),
        ("ann@campus.test", "Ann@Campus.test"),
    ],
)
@pytest.mark.gen_test
async def test_every_spelling_reaches_the_account(
    fetch: Fetch, spelling: str, account: str
) -> None:
    assert await login(fetch, spelling) == (200, {"user": {"email": account}})


@pytest.mark.gen_test
async def test_odd_emails_at_login_are_a_plain_403(fetch: Fetch) -> None:
    for odd in (f"{FULLWIDTH_BOB}@ex\u00e4mple.edu", "\ud800@example.edu", "a@\udfff.edu",
                "a@xn--", "bob@xn--zz.edu", "a@" + "\u00e9" * 252, "@", "x", "a@.",
                "a@\u200b.com"):  # fmt: skip
        assert await login(fetch, odd) == (403, {"errorMessage": "Permission denied!"}), odd

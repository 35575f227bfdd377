"""The password policy for `users add` (campus.accounts.passwords): each refusal names its rule."""

from __future__ import annotations

import pytest

from campus.accounts.passwords import MAX_PASSWORD, PasswordRejected, check_password, is_common

GOOD = "correct horse battery staple"


def refusal(password: str, *, min_length: int = 15, email: str = "") -> str:
    with pytest.raises(PasswordRejected) as refused:
        check_password(password, min_length=min_length, email=email)
    return str(refused.value)


def test_a_long_uncommon_pass_phrase_is_accepted() -> None:
    check_password(GOOD, min_length=15, email="ann@campus.test")
    check_password("x" * MAX_PASSWORD, min_length=15)  # the longest allowed


def test_each_refusal_says_which_rule() -> None:
    assert refusal("") == "password is empty"
    short = refusal("fourteen chars")
    assert "too short: 14 characters, at least 15" in short and "min_password_length" in short
    assert "too long" in refusal("x" * (MAX_PASSWORD + 1))
    assert "email" in refusal("ann.example@campus.test", email="ann.example@campus.test")
    assert "email" in refusal("Annabelle-Lee-Smith", email="annabelle-lee-smith@campus.test")
    assert "common or breached" in refusal("passwordpassword")


def test_the_length_counts_characters_not_bytes() -> None:
    check_password("ünïcödé pàsswörd", min_length=15)  # 16 characters, more bytes
    assert "too short" in refusal("ünïcödé", min_length=8)


def test_common_passwords_are_found_in_any_case_and_at_any_length() -> None:
    assert is_common("password") and is_common("PASSWORD")  # the short list
    assert is_common("passwordpassword") and is_common("PasswordPassword")  # the long one
    assert not is_common(GOOD)
    assert "common or breached" in refusal("password", min_length=8)

"""No one locks a user out of a browser she has signed in with (device cookies), in Chromium.

Ann signs in and out in one browser context; an attacker in another context (the same address,
as behind a campus NAT) fails as Ann until her email is locked; Ann's first browser still
signs in, while a browser she never used is refused. Every page state passes axe.
"""

from __future__ import annotations

from collections.abc import Callable

from playwright.sync_api import Page, expect

from tests.e2e.conftest import base_url
from tests.support.apps import PASSWORD
from tests.support.servers import Campus

ANN = "ann@campus.test"
MAX_FAILURES = 5  # the default [login] max_failures


def sign_in(page: Page, password: str = PASSWORD) -> None:
    page.goto("/login?next=/account")
    page.get_by_label("Email address").fill(ANN)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in", exact=True).click()


def device_cookies(page: Page) -> list[str]:
    return [c["name"] for c in page.context.cookies() if c["name"].endswith(".device")]


def test_a_locked_email_still_signs_in_from_a_browser_that_signed_in_before(
    open_page: Callable[[str], Page],
    campus: Campus,
    assert_accessible: Callable[[Page, str], None],
) -> None:
    url = base_url(campus)
    ann = open_page(url)
    sign_in(ann)
    expect(ann.get_by_role("heading", level=1)).to_have_text("Your account")
    assert_accessible(ann, "account page, signed in")
    ann.get_by_role("button", name="Sign out of campus").click()
    expect(ann.get_by_role("button", name="Sign in", exact=True)).to_be_visible()
    assert device_cookies(ann) == ["campus.sid.device"]  # kept through the logout

    attacker = open_page(url)
    for _ in range(MAX_FAILURES):
        sign_in(attacker, "a wrong guess")
        expect(attacker.locator("#login-error")).to_contain_text("Permission denied!")
    sign_in(attacker, "another guess")
    expect(attacker.locator("#login-error")).to_contain_text("Too many failed logins")
    assert_accessible(attacker, "sign-in, throttled")

    stranger = open_page(url)  # the right password, from a browser Ann never used: locked
    sign_in(stranger)
    expect(stranger.locator("#login-error")).to_contain_text("Too many failed logins")

    sign_in(ann)  # her own browser: in
    expect(ann.get_by_role("heading", level=1)).to_have_text("Your account")
    assert_accessible(ann, "account page, signed in again while the email is locked")

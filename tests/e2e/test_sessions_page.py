"""'Your sessions' in headless Chromium: two browsers (contexts) signed in as Ann; A ends B."""

from __future__ import annotations

from collections.abc import Callable

from playwright.sync_api import Page, expect

from tests.e2e.conftest import base_url
from tests.support.apps import PASSWORD
from tests.support.servers import Campus


def sign_in(page: Page, next_path: str = "/account/sessions") -> None:
    page.goto(f"/login?next={next_path}")
    page.get_by_label("Email address").fill("ann@campus.test")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()


def sessions_page(page: Page) -> None:
    expect(page.get_by_role("heading", level=1)).to_have_text("Your sessions")


def test_a_session_ended_from_another_browser_is_signed_out(
    open_page: Callable[[str], Page], campus: Campus
) -> None:
    url = base_url(campus)
    b = open_page(url)
    sign_in(b, "/account")
    expect(b.get_by_role("heading", level=1)).to_have_text("Your account")

    a = open_page(url)
    sign_in(a, "/account")
    a.get_by_role("link", name="See where you are signed in").click()
    expect(a).to_have_url(f"{url}/account/sessions")
    sessions_page(a)
    cards = a.get_by_role("region")
    expect(cards).to_have_count(2)
    this = cards.filter(has_text="This device")
    expect(this).to_have_count(1)
    expect(this.get_by_role("button")).to_have_count(0)  # no "Sign out" on the current one
    expect(this).to_contain_text("127.0.0.1")
    expect(this.get_by_role("definition").nth(2)).to_have_text("now")  # last active
    other = cards.filter(has_not_text="This device")
    expect(other.get_by_role("definition").nth(1)).to_have_text("just now")  # signed in

    agent = other.get_by_role("heading").inner_text()
    assert agent.startswith("Headless Chrome ") and agent.endswith(" on Linux"), agent
    sign_out = other.get_by_role("button", name="Sign out")
    expect(sign_out).to_have_accessible_name(f"Sign out {agent}, signed in just now")
    sign_out.click()
    expect(a.get_by_role("status")).to_have_text(f"Signed out {agent}.")
    expect(cards).to_have_count(1)
    expect(a.get_by_role("button", name="Sign out all other sessions")).to_be_hidden()

    # B's next navigation lands on the sign-in page
    b.get_by_role("navigation").get_by_role("link", name="Home").click()
    expect(b).to_have_url(f"{url}/login")
    expect(b.get_by_role("heading", level=1)).to_have_text("Sign in")
    expect(b.get_by_role("main").get_by_text("Your session has ended.")).to_be_visible()

    # A is still signed in
    a.reload()
    sessions_page(a)
    expect(a.get_by_role("region")).to_have_count(1)


def test_sign_out_all_other_sessions(open_page: Callable[[str], Page], campus: Campus) -> None:
    url = base_url(campus)
    others = [open_page(url) for _ in range(2)]
    for page in others:
        sign_in(page)
        sessions_page(page)
    a = open_page(url)
    sign_in(a)
    sessions_page(a)
    end_others = a.get_by_role("button", name="Sign out all other sessions")
    expect(end_others).to_be_visible()  # the list is in
    count = a.get_by_role("region").count()  # Ann's earlier tests on this server count too
    assert count >= 3
    end_others.click()
    expect(a.get_by_role("status")).to_have_text(f"Signed out {count - 1} other sessions.")
    expect(a.get_by_role("region")).to_have_count(1)
    expect(a.get_by_role("heading", level=1)).to_be_focused()
    for page in others:
        page.reload()
        expect(page).to_have_url(f"{url}/login?next=%2Faccount%2Fsessions")


def test_relative_times_read_as_people_say_them(page: Page) -> None:
    page.goto("/login")
    said = page.evaluate(
        """async () => {
            const { ago } = await import("/js/sessions.js");
            const now = 1_800_000_000;
            return [10, 50, 180, 3599, 7200, 3 * 86400, 90 * 86400].map((s) => ago(now - s, now));
        }"""
    )
    assert said == [
        "just now",
        "1 minute ago",
        "3 minutes ago",
        "1 hour ago",
        "2 hours ago",
        "3 days ago",
        "3 months ago",
    ]

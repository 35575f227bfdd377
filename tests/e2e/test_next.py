"""``/login?next=`` only ever leads to a path on campus's own origin, however it is spelled.

Both ways it is followed: signing in on the form, and the "Continue" link shown to someone
already signed in. A foreign host that the browser reaches anyway is answered by a route
of the test's own, so a leak shows up as that URL rather than as a network error.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from playwright.sync_api import Page, Route, expect

from tests.e2e.conftest import base_url
from tests.e2e.test_spa import heading, sign_in
from tests.support.servers import Campus, campus_env

EVIL = "evil.example"
SPELLINGS = [
    f"//{EVIL}/",
    f"/.//{EVIL}/",
    f"/..//{EVIL}/",
    f"/%2e//{EVIL}/",
    f"/%2E%2e//{EVIL}/",
    f"/a/..//{EVIL}/",
    f"/\\{EVIL}/",
    f"\\\\{EVIL}/",
    f"/\\/{EVIL}/",
    f"/\t/{EVIL}/",
    f"/\n/{EVIL}/",
    f"https://{EVIL}/",
    f"http:{EVIL}/",
    f"https:/{EVIL}/",
    "javascript:alert(document.domain)",
    "data:text/html,<script>alert(1)</script>",
]


@pytest.fixture(scope="module")
def campus(users_file: Path) -> Iterator[Campus]:
    """One store is enough here: this is the SPA's logic, not the session's."""
    server = Campus(campus_env(CAMPUS_USERS_FILE=str(users_file)))
    yield server
    log = server.stop()
    assert "Traceback" not in log, log


@pytest.fixture
def page(page: Page) -> Page:
    def evil(route: Route) -> None:
        route.fulfill(status=200, content_type="text/html", body="<title>evil</title>gotcha")

    page.context.route(f"**://{EVIL}/**", evil)
    return page


def login_url(next_path: str) -> str:
    return "/login?next=" + quote(next_path, safe="")


@pytest.mark.parametrize("spelling", SPELLINGS, ids=repr)
def test_signing_in_never_leaves_the_site(page: Page, campus: Campus, spelling: str) -> None:
    page.goto(login_url(spelling))
    sign_in(page)
    expect(heading(page)).to_have_text("Welcome, Ann")
    expect(page).to_have_url(f"{base_url(campus)}/")


@pytest.mark.parametrize("spelling", SPELLINGS, ids=repr)
def test_continuing_while_signed_in_never_leaves_the_site(
    page: Page, campus: Campus, spelling: str
) -> None:
    page.goto("/login")
    sign_in(page)
    expect(heading(page)).to_have_text("Welcome, Ann")
    page.goto(login_url(spelling))
    expect(heading(page)).to_have_text("You are already signed in")
    link = page.get_by_role("link", name="Continue")
    assert link.evaluate("a => new URL(a.href).origin") == base_url(campus)
    link.click()
    expect(heading(page)).to_have_text("Welcome, Ann")
    expect(page).to_have_url(f"{base_url(campus)}/")


@pytest.mark.parametrize(
    "spelling, lands_on",
    [
        ("/account", "/account"),
        ("/./account?tab=1", "/account?tab=1"),
        ("/x/../account", "/account"),
    ],
)
def test_a_path_of_our_own_is_followed(
    page: Page, campus: Campus, spelling: str, lands_on: str
) -> None:
    page.goto(login_url(spelling))
    sign_in(page)
    expect(page).to_have_url(f"{base_url(campus)}{lands_on}")
    expect(heading(page)).to_have_text("Your account")

"""The whole flow in headless Chromium against a real campus process, on both stores."""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Locator, Page, expect

from tests.e2e.conftest import base_url
from tests.support.apps import PASSWORD
from tests.support.servers import Campus, RedisServer, campus_env

Accessible = Callable[[Page, str], None]


def heading(page: Page) -> Locator:
    return page.get_by_role("heading", level=1)


def sign_in(page: Page, email: str = "ann@campus.test", password: str = PASSWORD) -> None:
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in", exact=True).click()


def session_id(page: Page) -> str:
    """The session cookie's value, as the browser holds it (scripts cannot see it)."""
    (cookie,) = [c for c in page.context.cookies() if c["name"] == "campus.sid"]
    return cookie["value"].strip('"')


def server_get(campus: Campus, path: str, sid: str) -> int:
    """GET *path* from outside the browser with the given session id; the status."""
    campus.cookie = sid
    return campus.request(path)[0]


def test_sign_in_reload_a_deep_link_and_sign_out(
    page: Page, campus: Campus, assert_accessible: Accessible
) -> None:
    url = base_url(campus)
    page.goto("/account")
    expect(page).to_have_url(f"{url}/login?next=%2Faccount")  # /api/me said 401
    expect(heading(page)).to_have_text("Sign in")
    assert_accessible(page, "sign-in")

    sign_in(page)
    expect(page).to_have_url(f"{url}/account")
    expect(heading(page)).to_have_text("Your account")
    expect(page.get_by_role("definition").filter(has_text="ann@campus.test")).to_be_visible()
    expect(page.get_by_role("banner")).to_contain_text("Signed in as Ann")
    assert_accessible(page, "account")

    page.reload()  # a deep link: the server's SPA fallback, then the client route
    expect(heading(page)).to_have_text("Your account")
    expect(page.get_by_role("definition").filter(has_text="ann@campus.test")).to_be_visible()

    assert "campus.sid" not in page.evaluate("document.cookie")
    (cookie,) = [c for c in page.context.cookies() if c["name"] == "campus.sid"]
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Lax"
    sid = session_id(page)

    page.get_by_role("navigation").get_by_role("link", name="Home").click()
    expect(page).to_have_url(f"{url}/")
    expect(heading(page)).to_have_text("Welcome, Ann")
    expect(heading(page)).to_be_focused()  # focus follows the route change
    assert_accessible(page, "home")

    with page.expect_request("**/logout") as logout:
        page.get_by_role("banner").get_by_role("button", name="Sign out").click()
    assert logout.value.method == "POST"  # GET /logout is refused to other origins' pages
    expect(page).to_have_url(f"{url}/login")
    expect(page.get_by_role("main").get_by_text("You have been signed out.")).to_be_visible()
    assert_accessible(page, "signed-out message")
    expect(page.get_by_text("Signed in as")).to_be_hidden()
    expect(page.get_by_role("button", name="Sign out")).to_be_hidden()

    me = page.request.get("/api/me")
    assert me.status == 401
    assert me.json() == {"errorMessage": "Not logged in"}
    # Gone from the store, not only from the browser: the old cookie is worth nothing.
    assert server_get(campus, "/api/me", sid) == 401


def test_a_wrong_password_shows_the_servers_message(
    page: Page, campus: Campus, assert_accessible: Accessible
) -> None:
    page.goto("/login")
    sign_in(page, password="not the password")
    expect(page.get_by_role("alert").filter(has_text="Permission denied!")).to_be_visible()
    assert_accessible(page, "sign-in with an error")
    expect(page).to_have_url(f"{base_url(campus)}/login")
    expect(page.get_by_label("Password")).to_be_focused()
    expect(page.get_by_label("Password")).to_have_value("")
    expect(page.get_by_label("Email address")).to_have_attribute("aria-invalid", "true")
    assert [c for c in page.context.cookies() if c["name"] == "campus.sid"] == []

    sign_in(page)  # the error goes away with a good password
    expect(heading(page)).to_have_text("Welcome, Ann")
    expect(page.get_by_text("Permission denied!")).to_have_count(0)


def test_keyboard_only(page: Page, campus: Campus) -> None:
    page.goto("/login")
    expect(page.get_by_label("Email address")).to_be_focused()
    page.keyboard.type("bob@campus.test")
    page.keyboard.press("Tab")
    expect(page.get_by_label("Password")).to_be_focused()
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    expect(heading(page)).to_have_text("Welcome, Bob")
    expect(heading(page)).to_be_focused()

    page.reload()
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to main content")
    expect(skip).to_be_focused()
    expect(skip).to_be_visible()


def test_an_ended_session_sends_the_user_to_sign_in(page: Page, campus: Campus) -> None:
    url = base_url(campus)
    page.goto("/login")
    sign_in(page)
    expect(heading(page)).to_have_text("Welcome, Ann")

    # The session ends on the server (as when it expires) while the browser still has it.
    assert server_get(campus, "/logout", session_id(page)) == 200

    page.get_by_role("navigation").get_by_role("link", name="Account").click()
    expect(page).to_have_url(f"{url}/login?next=%2Faccount")
    ended = page.get_by_role("main").get_by_text("Your session has ended. Please sign in again.")
    expect(ended).to_be_visible()
    sign_in(page)
    expect(page).to_have_url(f"{url}/account")  # back where the user was going
    expect(heading(page)).to_have_text("Your account")


def test_a_throttled_sign_in_shows_the_servers_message(
    open_page: Callable[[str], Page], users_file: Path, assert_accessible: Accessible
) -> None:
    """A real 429 from a server of this test's own (its counters must not throttle others)."""
    env = campus_env(
        CAMPUS_USERS_FILE=str(users_file), CAMPUS_LOGIN_MAX_FAILURES="2", CAMPUS_LOGIN_WINDOW="120"
    )
    campus = Campus(env)
    try:
        page = open_page(base_url(campus))
        page.goto("/login")
        for _ in range(2):
            sign_in(page, password="not the password")
            expect(page.get_by_role("alert").filter(has_text="Permission denied!")).to_be_visible()
        sign_in(page)  # even the right password, while throttled
        alert = page.get_by_role("alert").filter(has_text="Too many failed logins")
        expect(alert).to_be_visible()
        expect(alert).to_contain_text(re.compile(r"try again in (2 minutes|1 minute|\d+ seconds)"))
        assert_accessible(page, "sign-in throttled")
        assert [c for c in page.context.cookies() if c["name"] == "campus.sid"] == []
    finally:
        log = campus.stop()
    assert "Traceback" not in log, log


def test_a_store_outage_shows_the_servers_message_and_recovers(
    open_page: Callable[[str], Page],
    users_file: Path,
    tmp_path: Path,
    assert_accessible: Accessible,
) -> None:
    """A Redis of this test's own, frozen (SIGSTOP) and thawed under the running server.

    Frozen rather than stopped: the data survives, as it would a network partition, and
    the server must give up within its timeout instead of hanging.
    """
    redis = RedisServer(tmp_path)
    redis.start()
    assert redis.process is not None
    pid = redis.process.pid
    env = campus_env(
        CAMPUS_STORE="redis",
        CAMPUS_REDIS_URL=redis.url,
        CAMPUS_REDIS_TIMEOUT="0.5",
        CAMPUS_USERS_FILE=str(users_file),
    )
    campus = Campus(env)
    unavailable = "Session store unavailable"
    try:
        page = open_page(base_url(campus))
        page.goto("/login")
        expect(heading(page)).to_have_text("Sign in")

        os.kill(pid, signal.SIGSTOP)
        sign_in(page)
        expect(page.get_by_role("alert").filter(has_text=unavailable)).to_be_visible()

        os.kill(pid, signal.SIGCONT)
        sign_in(page)
        expect(heading(page)).to_have_text("Welcome, Ann")

        os.kill(pid, signal.SIGSTOP)
        page.reload()
        expect(page.get_by_role("alert").filter(has_text=unavailable)).to_be_visible()
        expect(heading(page)).to_have_text(re.compile("can't check your session"))
        assert_accessible(page, "store unavailable")

        os.kill(pid, signal.SIGCONT)
        page.get_by_role("button", name="Try again").click()
        expect(heading(page)).to_have_text("Welcome, Ann")  # the same session, still there
    finally:
        os.kill(pid, signal.SIGCONT)
        log = campus.stop()
        redis.stop()
    assert "Traceback" not in log, log


def test_not_found_and_already_signed_in(
    page: Page, campus: Campus, assert_accessible: Accessible
) -> None:
    page.goto("/no/such/page")
    expect(heading(page)).to_have_text("Page not found")
    assert_accessible(page, "not found, signed out")

    page.goto("/login")
    sign_in(page)
    expect(heading(page)).to_have_text("Welcome, Ann")
    page.goto("/no/such/page")
    expect(heading(page)).to_have_text("Page not found")
    assert_accessible(page, "not found, signed in")
    page.goto("/login")
    expect(heading(page)).to_have_text("You are already signed in")
    assert_accessible(page, "already signed in")

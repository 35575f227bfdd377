"""Your sessions says which sessions are device-bound (DBSC), in headless Chromium.

The bound session is made by the suite's DBSC client (tests/support/dbsc.py) against the same
campus process; the page of a signed-in browser then lists it beside its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from playwright.sync_api import Page, expect
from tornado.httpclient import AsyncHTTPClient

from tests.e2e.conftest import base_url
from tests.e2e.test_sessions_page import sessions_page, sign_in
from tests.support.apps import PASSWORD
from tests.support.dbsc import DbscClient
from tests.support.servers import Campus

BOUND = "Bound to a device key"


def bind_a_session(url: str) -> None:
    """Sign Ann in with the DBSC client and register its key (in a thread of its own: the
    page's Playwright owns this one's event loop)."""

    async def run() -> None:
        http = AsyncHTTPClient(force_instance=True)
        try:
            client = DbscClient(http, url, "ES256")
            assert (await client.login("ann@campus.test", PASSWORD)).code == 200
            response = await client.register()
            assert response.code == 200, response.body
        finally:
            http.close()

    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, run()).result()


def test_your_sessions_says_which_are_bound(
    open_page: Callable[[str], Page],
    campus: Campus,
    assert_accessible: Callable[[Page, str], None],
) -> None:
    url = base_url(campus)
    bind_a_session(url)
    page = open_page(url)
    sign_in(page)
    sessions_page(page)
    cards = page.get_by_role("region")
    this = cards.filter(has_text="This device")
    expect(this).to_have_count(1)
    expect(this.get_by_role("definition").nth(3)).to_have_text("Not bound")  # no DBSC here
    expect(cards.filter(has_text=BOUND).first).to_be_visible()
    expect(page.get_by_role("term").filter(has_text="Device binding").first).to_be_visible()
    assert_accessible(page, "sessions, one of them device-bound")

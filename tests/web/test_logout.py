"""Logout that no other page can trigger: Sec-Fetch-Site on GET, Clear-Site-Data only with
the session cookie (otherwise any page's ``<img src=/logout>`` wipes every cookie of the
site). The browser's side of it is in tests/e2e/test_origins.py."""

from __future__ import annotations

import pytest

from campus.web.services import Services
from tests.support.apps import Fetch, error_of, json_of, logged_in, me, session_cookie


@pytest.mark.parametrize("site", ["cross-site", "same-site", "Same-Origin", "", "nonsense"])
@pytest.mark.gen_test
async def test_get_logout_for_another_origins_page_is_refused(
    fetch: Fetch, services: Services, site: str
) -> None:
    cookie = await logged_in(fetch)
    headers = {"Cookie": f"campus.sid={cookie}", "Sec-Fetch-Site": site}
    response = await fetch("/logout", headers=headers)
    assert error_of(response, 403) == "Cross-origin request refused"
    assert response.headers.get("Clear-Site-Data") is None
    assert session_cookie(response) is None  # the cookie is left alone too
    assert json_of(await me(fetch, cookie))["user"]["email"] == "ann@campus.test"


@pytest.mark.parametrize("site", ["same-origin", "none", None])
@pytest.mark.gen_test
async def test_get_logout_from_our_own_pages_and_from_scripts_works(
    fetch: Fetch, site: str | None
) -> None:
    """``none``: typed into the address bar or a bookmark; no header at all: curl, a script."""
    cookie = await logged_in(fetch)
    headers = {"Cookie": f"campus.sid={cookie}"}
    if site is not None:
        headers["Sec-Fetch-Site"] = site
    response = await fetch("/logout", headers=headers)
    assert json_of(response) == {}
    assert response.headers.get("Clear-Site-Data") == '"cache", "storage"'
    assert session_cookie(response) == ""
    assert error_of(await me(fetch, cookie), 401) == "Not logged in"


@pytest.mark.gen_test
async def test_post_logout_is_guarded_by_origin_not_sec_fetch_site(fetch: Fetch) -> None:
    cookie = await logged_in(fetch)
    foreign = {"Cookie": f"campus.sid={cookie}", "Origin": "http://evil.test"}
    response = await fetch("/logout", method="POST", body=b"", headers=foreign)
    assert error_of(response, 403) == "Cross-origin request refused"
    assert json_of(await me(fetch, cookie))["user"]["email"] == "ann@campus.test"

    own = {"Cookie": f"campus.sid={cookie}", "Sec-Fetch-Site": "same-origin"}
    response = await fetch("/logout", method="POST", body=b"", headers=own)
    assert json_of(response) == {}
    assert response.headers.get("Clear-Site-Data") == '"cache", "storage"'


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.gen_test
async def test_clear_site_data_only_when_the_session_cookie_came(fetch: Fetch, method: str) -> None:
    body = b"" if method == "POST" else None
    for headers in ({}, {"Cookie": "other=1; campus.sidx=2"}):
        response = await fetch("/logout", method=method, body=body, headers=headers)
        assert json_of(response) == {}
        assert response.headers.get("Clear-Site-Data") is None, headers
    # Any value of it counts, a dead or garbage one included: that cookie is worth wiping.
    for value in ("garbage", ""):
        headers = {"Cookie": f"other=1; campus.sid={value}"}
        response = await fetch("/logout", method=method, body=body, headers=headers)
        assert response.headers.get("Clear-Site-Data") == '"cache", "storage"', value

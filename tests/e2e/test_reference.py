"""A server failure shows the user a reference, and that reference finds its lines in the log."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from playwright.sync_api import Page, expect

from campus.session import CookieSigner
from campus.session.store import new_session_id
from tests.e2e.conftest import base_url
from tests.e2e.test_spa import heading, sign_in
from tests.support.servers import SECRET, Campus, campus_env, free_port

REFERENCE = re.compile(r"\(reference: ([0-9a-f]{16})\)")


def test_store_unavailable_messages_carry_a_reference_found_in_the_log(
    open_page: Callable[[str], Page],
) -> None:
    """Redis never answers (nothing listens on its port): sign-in and the session check fail."""
    campus = Campus(
        campus_env(
            CAMPUS_STORE="redis",
            CAMPUS_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
            CAMPUS_SESSION_SECRET=SECRET,
            CAMPUS_LOG_FORMAT="json",
        )
    )
    references = []
    try:
        page = open_page(base_url(campus))
        page.goto("/login")
        sign_in(page)
        alert = page.get_by_role("alert").filter(has_text="Session store unavailable")
        expect(alert).to_contain_text(REFERENCE)
        references.append(REFERENCE.search(alert.inner_text()).group(1))  # type: ignore[union-attr]

        cookie = CookieSigner([SECRET]).sign("campus.sid", new_session_id())
        page.context.add_cookies([{"name": "campus.sid", "value": cookie, "url": page.url}])
        page.goto("/account")
        expect(heading(page)).to_have_text(re.compile("can't check your session"))
        alert = page.get_by_role("alert").filter(has_text="Session store unavailable")
        expect(alert).to_contain_text(REFERENCE)
        references.append(REFERENCE.search(alert.inner_text()).group(1))  # type: ignore[union-attr]
    finally:
        log = campus.stop()
    lines = [json.loads(line) for line in log.splitlines()]
    for reference, path in zip(references, ["/login", "/api/me"], strict=True):
        mine = [line for line in lines if line.get("request_id") == reference]
        access = [line for line in mine if line["logger"] == "campus.access"]
        assert [(a["path"], a["status"]) for a in access] == [(path, 503)], mine
        assert any("unavailable" in line["message"] for line in mine if line not in access)

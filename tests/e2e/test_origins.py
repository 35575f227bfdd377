"""Another origin's page cannot sign a campus user out: ``<img src=".../logout">``.

The page is served by a small HTTP server of the test's own, reached two ways: as
``http://127.0.0.1:<other port>`` (another origin of the same site: SameSite lets the
cookie go along) and as ``http://localhost:<other port>`` (another site: it does not, and
the old ``Clear-Site-Data`` answer wiped the cookie anyway).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import base_url
from tests.e2e.test_spa import heading, sign_in
from tests.support.servers import Campus, campus_env, wait_for


def campus_log(campus: Campus) -> str:
    return campus.log()


@pytest.fixture(scope="module")
def campus(users_file: Path) -> Iterator[Campus]:
    server = Campus(campus_env(CAMPUS_USERS_FILE=str(users_file)))
    yield server
    log = server.stop()
    assert "Traceback" not in log, log


@pytest.fixture(scope="module")
def elsewhere(campus: Campus) -> Iterator[int]:
    """The port of a server whose every page embeds campus's /logout as an image."""
    page = (
        f'<!doctype html><title>elsewhere</title><img alt="" src="{base_url(campus)}/logout">'
    ).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    thread.join(5)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"], ids=["same-site", "cross-site"])
def test_an_image_on_another_origin_does_not_sign_out(
    page: Page, campus: Campus, elsewhere: int, host: str
) -> None:
    page.goto("/login")
    sign_in(page)
    expect(heading(page)).to_have_text("Welcome, Ann")

    refused = campus_log(campus).count('"GET /logout" 403')
    other = page.context.new_page()
    # Chromium blocks the JSON answer from the image (ORB): the request ends as failed.
    with other.expect_event("requestfailed", lambda r: r.url.endswith("/logout")):
        other.goto(f"http://{host}:{elsewhere}/")
    other.close()

    assert [c["name"] for c in page.context.cookies() if c["name"] == "campus.sid"]
    page.reload()
    expect(heading(page)).to_have_text("Welcome, Ann")
    assert page.request.get("/api/me").status == 200
    # Refused by the server, not only blocked by the browser: nobody was logged out.
    wait_for(
        lambda: campus_log(campus).count('"GET /logout" 403') > refused,
        "the refused logout's access line",
        5,
    )

"""Security headers on the SPA shell, its files and the API; the real dist/ obeys its policy.

The shell and files come from the repository's own static/ and dist/ (the default ``app``
fixture), so these tests also check that what ships is servable under the policy it gets.
"""

from __future__ import annotations

import json
from html.parser import HTMLParser
from typing import Any

import pytest
from tornado.httpclient import HTTPResponse

from tests.support.apps import PASSWORD, Fetch
from tests.support.servers import REPO

SHELL_PATHS = ["/", "/login", "/account", "/deep/link", "/index.html"]
FILE_PATHS = ["/js/main.js", "/css/campus.css", "/favicon.svg", "/robots.txt"]


def csp(response: HTTPResponse) -> dict[str, list[str]]:
    """The Content-Security-Policy header as {directive: [sources]}."""
    header = response.headers.get("Content-Security-Policy")
    assert header, "no Content-Security-Policy"
    directives: dict[str, list[str]] = {}
    for part in header.split(";"):
        name, *sources = part.split()
        assert name not in directives, f"directive {name} twice"
        directives[name] = sources
    return directives


def assert_frontend_headers(response: HTTPResponse) -> None:
    policy = csp(response)
    assert policy["script-src"] == ["'self'"]
    assert policy["default-src"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["object-src"] == ["'none'"]
    every_source = [source for sources in policy.values() for source in sources]
    for loose in ("'unsafe-inline'", "'unsafe-eval'", "*", "data:", "http:", "https:"):
        assert loose not in every_source
    assert response.headers.get("X-Content-Type-Options") == "nosniff"
    assert response.headers.get("X-Frame-Options") == "DENY"
    assert response.headers.get("Referrer-Policy") in {
        "no-referrer",
        "same-origin",
        "strict-origin",
        "strict-origin-when-cross-origin",
    }


@pytest.mark.parametrize("path", SHELL_PATHS + FILE_PATHS)
@pytest.mark.gen_test
async def test_the_shell_and_its_files_carry_security_headers(fetch: Fetch, path: str) -> None:
    response = await fetch(path)
    assert response.code == 200, (path, response.code)
    assert_frontend_headers(response)


@pytest.mark.parametrize("path", ["/", "/account", "/js/main.js", "/favicon.svg"])
@pytest.mark.gen_test
async def test_304_and_head_keep_the_headers(fetch: Fetch, path: str) -> None:
    first = await fetch(path)
    etag = first.headers["ETag"]
    again = await fetch(path, headers={"If-None-Match": etag})
    assert again.code == 304
    assert_frontend_headers(again)
    assert_frontend_headers(await fetch(path, method="HEAD"))


@pytest.mark.gen_test
async def test_cache_control_shell_no_cache_files_etag(fetch: Fetch) -> None:
    for path in SHELL_PATHS:
        assert (await fetch(path)).headers.get("Cache-Control") == "no-cache", path
    for path in FILE_PATHS:
        response = await fetch(path)
        # dist/ files revalidate (no-cache, not no-store); static/ files may be cached.
        expected = "no-cache" if path.startswith(("/js/", "/css/")) else None
        assert response.headers.get("Cache-Control") == expected, path
        assert response.headers.get("ETag"), path


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/missing.js"), ("POST", "/"), ("GET", "/img/x.png")]
)
@pytest.mark.gen_test
async def test_frontend_errors_carry_the_headers_too(fetch: Fetch, method: str, path: str) -> None:
    response = await fetch(path, method=method, body=b"" if method == "POST" else None)
    assert response.code in (404, 405)
    assert response.headers.get("Content-Type", "").startswith("application/json")
    assert_frontend_headers(response)


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("GET", "/api/me", None, 401),
        ("POST", "/login", {"email": "ann@campus.test", "password": "wrong"}, 403),
        ("POST", "/login", {"email": "ann@campus.test", "password": PASSWORD}, 200),
        ("GET", "/logout", None, 200),
        ("GET", "/healthz", None, 200),
        ("GET", "/api/nothing", None, 404),
    ],
)
@pytest.mark.gen_test
async def test_api_responses_refuse_sniffing_and_framing(
    fetch: Fetch, method: str, path: str, body: Any, status: int
) -> None:
    data = None if body is None else json.dumps(body).encode()
    response = await fetch(path, method=method, body=data)
    assert response.code == status, response.body
    assert response.headers.get("X-Content-Type-Options") == "nosniff"
    assert response.headers.get("X-Frame-Options") == "DENY"
    assert response.headers.get("Content-Type", "").startswith("application/json")


class ShellParser(HTMLParser):
    """Collects what the policy cares about in an HTML document."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []
        self.inline_script = False
        self.in_script = False
        self.style_elements = 0
        self.style_attributes: list[str] = []
        self.handlers: list[str] = []
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "script":
            self.scripts.append(attributes)
            self.in_script = True
        if tag == "style":
            self.style_elements += 1
        if "style" in attributes:
            self.style_attributes.append(tag)
        self.handlers += [f"{tag} {name}" for name in attributes if name.startswith("on")]
        for name in ("src", "href"):
            value = attributes.get(name)
            if value and not value.startswith("#") and tag in ("script", "link", "img"):
                self.urls.append(value)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self.in_script = False

    def handle_data(self, data: str) -> None:
        if self.in_script and data.strip():
            self.inline_script = True


def parse_shell() -> ShellParser:
    parser = ShellParser()
    parser.feed((REPO / "dist" / "index.html").read_text(encoding="utf-8"))
    return parser


def test_the_shipped_shell_has_no_inline_script_or_style() -> None:
    shell = parse_shell()
    assert shell.scripts, "the shell loads no script"
    assert all(script.get("src") for script in shell.scripts)
    assert not shell.inline_script
    assert shell.handlers == []
    assert shell.style_attributes == []
    assert shell.style_elements == 0


@pytest.mark.gen_test
async def test_everything_the_shell_loads_is_served_with_the_right_type(fetch: Fetch) -> None:
    """nosniff makes browsers refuse a script or stylesheet served with the wrong type."""
    expected = {".js": "javascript", ".css": "text/css", ".svg": "image/svg+xml"}
    urls = parse_shell().urls
    assert {url.rsplit(".", 1)[-1] for url in urls} >= {"js", "css", "svg"}
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), f"not local: {url}"
        response = await fetch(url)
        assert response.code == 200, url
        kind = expected["." + url.rsplit(".", 1)[-1]]
        assert kind in response.headers.get("Content-Type", ""), (url, response.headers)


@pytest.mark.gen_test
async def test_every_module_is_served_as_javascript(fetch: Fetch) -> None:
    modules = sorted((REPO / "dist" / "js").glob("*.js"))
    assert modules
    for module in modules:
        response = await fetch(f"/js/{module.name}")
        assert response.code == 200
        assert "javascript" in response.headers.get("Content-Type", "")
        assert_frontend_headers(response)

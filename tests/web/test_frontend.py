"""Static files and the SPA shell, served from a throwaway root with static/ and dist/.

The root also holds ``secret.txt`` next to static/ and dist/: no request, however its path
is spelled, may return it. Traversal requests go out over a raw socket so that exactly the
bytes below reach the server, whatever an HTTP client would have normalised.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import tornado.web
from tornado.httpclient import HTTPResponse
from tornado.tcpclient import TCPClient

from campus.session.store import new_session_id
from campus.web.app import make_app
from campus.web.handlers.spa import has_extension
from campus.web.services import Services, build_sessions
from tests.support.apps import DownStore, Fetch, session_cookie

SECRET = b"TOP-SECRET-campus-frontend-test-3f9a1c"
INDEX = b"<!doctype html><html><body><main id='app'>shell for tests</main></body></html>\n"
APP_JS = b"console.log('campus test bundle');\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00fake-png" * 8
ROBOTS = b"User-agent: *\nDisallow:\n"
FAVICON = b"\x00\x00\x01\x00fake-icon"
STATIC_SAME = b"same.txt from static/\n"
DIST_SAME = b"same.txt from dist/\n"
SECURITY_TXT = b"Contact: mailto:security@campus.test\n"
#: Files in dist/ that are not the app's: served, each would answer SECRET.
NOT_THE_APPS = [
    "campus-0.2.0.tar.gz",
    "campus-0.2.0-py3-none-any.whl",
    "app.js.bak",
    "backup.zip",
    ".env",
    ".git/config",
    ".git/HEAD.txt",
    "LICENSE",
    "server.py",
]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    static, dist = tmp_path / "static", tmp_path / "dist"
    (dist / "img").mkdir(parents=True)
    static.mkdir()
    (tmp_path / "secret.txt").write_bytes(SECRET)
    (tmp_path / "secret").write_bytes(SECRET)  # no extension: would be the shell if missed
    (static / "robots.txt").write_bytes(ROBOTS)
    (static / "favicon.ico").write_bytes(FAVICON)
    (static / "same.txt").write_bytes(STATIC_SAME)
    (dist / "index.html").write_bytes(INDEX)
    (dist / "app.js").write_bytes(APP_JS)
    (dist / "img" / "x.png").write_bytes(PNG)
    (dist / "same.txt").write_bytes(DIST_SAME)
    # symlinks inside the roots that lead out of them
    (dist / "leak.txt").symlink_to(tmp_path / "secret.txt")
    (dist / "leak").symlink_to(tmp_path / "secret")
    (dist / "up").symlink_to(tmp_path, target_is_directory=True)
    (static / "abs.txt").symlink_to("/etc/passwd")
    # not the app's, though inside its folders: build artefacts, hidden files, backups
    for name in NOT_THE_APPS:
        (dist / name).parent.mkdir(parents=True, exist_ok=True)
        (dist / name).write_bytes(SECRET)
    (static / ".hidden.txt").write_bytes(SECRET)
    (dist / "bundle.js").symlink_to(dist / "campus-0.2.0.tar.gz")  # a web name, not a web file
    (static / ".well-known").mkdir()
    (static / ".well-known" / "security.txt").write_bytes(SECURITY_TXT)
    # a sibling whose name starts like a root's: a prefix check must not accept it
    (tmp_path / "dist-evil").mkdir()
    (tmp_path / "dist-evil" / "x.txt").write_bytes(SECRET)
    return tmp_path


@pytest.fixture
def app(services: Services, root: Path) -> tornado.web.Application:
    return make_app(services, root=str(root))


def assert_shell(response: HTTPResponse) -> None:
    assert response.code == 200, (response.code, response.body[:200])
    assert response.body == INDEX
    assert response.headers.get("Content-Type", "").startswith("text/html")
    assert response.headers.get("Cache-Control") == "no-cache"


def assert_json_404(response: HTTPResponse) -> None:
    assert response.code == 404, (response.code, response.body[:200])
    assert response.headers.get("Content-Type", "").startswith("application/json")
    body = json.loads(response.body)
    assert set(body) == {"errorMessage"}
    assert isinstance(body["errorMessage"], str)
    assert body["errorMessage"]
    assert INDEX not in response.body


# --- files and the shell ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "content", "content_type"),
    [
        ("/robots.txt", ROBOTS, "text/plain"),
        ("/favicon.ico", FAVICON, "image/"),
        ("/app.js", APP_JS, "javascript"),
        ("/img/x.png", PNG, "image/png"),
        ("/same.txt", STATIC_SAME, "text/plain"),
        ("/index.html", INDEX, "text/html"),
        ("/img//x.png", PNG, "image/png"),
        ("/img/./x.png", PNG, "image/png"),
        ("/app.js?v=123", APP_JS, "javascript"),
    ],
)
@pytest.mark.gen_test
async def test_files_are_served(fetch: Fetch, path: str, content: bytes, content_type: str) -> None:
    response = await fetch(path)
    assert response.code == 200, (response.code, response.body[:200])
    assert response.body == content
    assert content_type in response.headers.get("Content-Type", "")
    assert session_cookie(response) is None


@pytest.mark.gen_test
async def test_static_wins_a_name_clash(fetch: Fetch) -> None:
    response = await fetch("/same.txt")
    assert response.body == STATIC_SAME
    assert DIST_SAME not in response.body


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/login",
        "/account",
        "/deep/link/path",
        "/some/dir/",
        "/img",
        "/img/",
        "/account?tab=2",
        "/users/ann@campus",
        "/%E2%9C%93",
        "/api",
        "/healthz/x",
    ],
)
@pytest.mark.gen_test
async def test_client_routes_answer_the_shell(fetch: Fetch, path: str) -> None:
    response = await fetch(path)
    assert_shell(response)
    assert session_cookie(response) is None


@pytest.mark.parametrize("path", ["/", "/login", "/deep/link/path", "/app.js", "/robots.txt"])
@pytest.mark.gen_test
async def test_head_works(fetch: Fetch, path: str) -> None:
    get = await fetch(path)
    head = await fetch(path, method="HEAD")
    assert head.code == 200
    assert head.body == b""
    assert head.headers.get("Content-Type") == get.headers.get("Content-Type")
    assert head.headers.get("Content-Length") == str(len(get.body))
    assert head.headers.get("ETag") == get.headers.get("ETag")
    if get.body == INDEX:
        assert head.headers.get("Cache-Control") == "no-cache"


@pytest.mark.gen_test
async def test_dist_files_are_revalidated_and_static_files_may_be_cached(fetch: Fetch) -> None:
    for path in ("/app.js", "/img/x.png"):  # unversioned names: revalidate like the shell
        response = await fetch(path)
        assert response.headers.get("Cache-Control") == "no-cache"
        again = await fetch(path, headers={"If-None-Match": response.headers["ETag"]})
        assert again.code == 304
    static = await fetch("/robots.txt")
    assert static.headers.get("Cache-Control") not in ("no-cache", "no-store")


@pytest.mark.parametrize(
    "path",
    [
        "/app2.js",
        "/img/none.png",
        "/x.map",
        "/app.js.map",
        "/deep/link/bundle.css",
        "/.env",
        "/secret.txt",
        "/dist-evil/x.txt",
    ],
)
@pytest.mark.gen_test
async def test_missing_files_with_an_extension_are_json_404(fetch: Fetch, path: str) -> None:
    response = await fetch(path)
    assert_json_404(response)
    assert SECRET not in response.body


@pytest.mark.parametrize(
    "path",
    [
        "/campus-0.2.0.tar.gz",
        "/campus-0.2.0-py3-none-any.whl",
        "/app.js.bak",
        "/backup.zip",
        "/.env",
        "/.git/config",
        "/.git/HEAD.txt",
        "/LICENSE",
        "/server.py",
        "/.hidden.txt",
        "/bundle.js",
        "/%2egit/config",
    ],
)
@pytest.mark.gen_test
async def test_what_is_not_the_apps_is_never_served(fetch: Fetch, path: str) -> None:
    """Only web files leave static/ and dist/: a build artefact or a hidden file is a 404
    (or, without an extension, the shell), never its content."""
    for method in ("GET", "HEAD"):
        response = await fetch(path, method=method)
        assert SECRET not in response.body
        if has_extension(path):
            assert response.code == 404, (method, path, response.code)
        else:
            assert response.code == 200 and response.body in (INDEX, b"")


@pytest.mark.gen_test
async def test_the_well_known_folder_is_served(fetch: Fetch) -> None:
    response = await fetch("/.well-known/security.txt")
    assert (response.code, response.body) == (200, SECURITY_TXT)


@pytest.mark.gen_test
async def test_head_of_a_missing_file_is_404(fetch: Fetch) -> None:
    response = await fetch("/app2.js", method="HEAD")
    assert response.code == 404
    assert response.body == b""


@pytest.mark.parametrize("path", ["/%61pi/me", "/api%2Fme", "/a%70i/sessions", "/%61pi/"])
@pytest.mark.gen_test
async def test_an_encoded_api_path_is_a_json_404_never_the_shell(fetch: Fetch, path: str) -> None:
    response = await fetch(path)
    assert response.code == 404
    assert json.loads(response.body) == {"errorMessage": "Not found"}
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("path", ["/%61pi", "/%41PI/x"])
@pytest.mark.gen_test
async def test_encoded_client_routes_stay_the_shell(fetch: Fetch, path: str) -> None:
    # /api as written plainly, and /API/x (paths are case-sensitive), are client routes.
    assert_shell(await fetch(path))


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.gen_test
async def test_a_range_past_the_end_is_a_json_416(fetch: Fetch, method: str) -> None:
    response = await fetch("/app.js", method=method, headers={"Range": "bytes=9999-"})
    assert response.code == 416
    assert response.headers["Content-Range"] == f"bytes */{len(APP_JS)}"
    assert response.headers["Content-Type"] == "application/json; charset=UTF-8"
    if method == "GET":
        assert json.loads(response.body) == {"errorMessage": "Range not satisfiable"}
    else:
        assert response.body == b""


@pytest.mark.gen_test
async def test_a_range_within_the_file_is_served(fetch: Fetch) -> None:
    response = await fetch("/app.js", headers={"Range": "bytes=0-6"})
    assert response.code == 206
    assert response.body == APP_JS[:7]


# --- conditional requests --------------------------------------------------------------


@pytest.mark.parametrize("path", ["/app.js", "/robots.txt", "/img/x.png", "/", "/deep/link"])
@pytest.mark.gen_test
async def test_conditional_requests_answer_304(fetch: Fetch, path: str) -> None:
    first = await fetch(path)
    assert first.code == 200
    etag = first.headers.get("ETag")
    last_modified = first.headers.get("Last-Modified")
    assert etag
    assert etag.startswith('"')
    assert last_modified
    assert last_modified.endswith("GMT")

    by_etag = await fetch(path, headers={"If-None-Match": etag})
    assert by_etag.code == 304
    assert by_etag.body == b""

    by_date = await fetch(path, headers={"If-Modified-Since": last_modified})
    assert by_date.code == 304
    assert by_date.body == b""

    stale = await fetch(path, headers={"If-None-Match": '"not-the-etag"'})
    assert stale.code == 200
    assert stale.body == first.body

    old = await fetch(path, headers={"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"})
    assert old.code == 200
    assert old.body == first.body


def rewrite(path: Path, content: bytes) -> None:
    """Change a file in place, with an mtime clearly later than before."""
    before = path.stat().st_mtime
    path.write_bytes(content)
    os.utime(path, (before + 10, before + 10))


@pytest.mark.gen_test
async def test_last_modified_follows_a_changed_file(fetch: Fetch, root: Path) -> None:
    first = await fetch("/app.js")
    rewrite(root / "dist" / "app.js", APP_JS + b"// v2\n")
    second = await fetch("/app.js", headers={"If-Modified-Since": first.headers["Last-Modified"]})
    assert second.code == 200
    assert second.body == APP_JS + b"// v2\n"
    assert second.headers["Last-Modified"] != first.headers["Last-Modified"]


@pytest.mark.gen_test
async def test_etag_follows_a_rebuilt_shell(fetch: Fetch, root: Path) -> None:
    first = await fetch("/deep/link")
    assert first.body == INDEX
    new_index = INDEX.replace(b"shell for tests", b"shell v2")
    rewrite(root / "dist" / "index.html", new_index)
    second = await fetch("/deep/link", headers={"If-None-Match": first.headers["ETag"]})
    assert second.code == 200
    assert second.body == new_index
    assert second.headers["ETag"] != first.headers["ETag"]


# --- traversal -------------------------------------------------------------------------


async def raw_get(port: int, target: bytes, method: bytes = b"GET") -> tuple[int, bytes, bytes]:
    """Send exactly this request target; return (status, head, body). Status 0: no answer."""
    stream = await TCPClient().connect("127.0.0.1", port)
    try:
        stream.write(
            method + b" " + target + b" HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        data = await stream.read_until_close()
    finally:
        stream.close()
    if not data:
        return 0, b"", b""
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, head, body


TRAVERSALS = [
    b"/../secret.txt",
    b"/../secret",
    b"/%2e%2e/secret.txt",
    b"/%2E%2E/secret.txt",
    b"/%2e%2e%2fsecret.txt",
    b"/%2e%2e%2f%2e%2e%2fsecret.txt",
    b"/.%2e/secret.txt",
    b"/static/..%2f..%2fsecret.txt",
    b"/static/../secret.txt",
    b"/dist/../secret.txt",
    b"/..%5csecret.txt",
    b"/..\\secret.txt",
    b"/%5c..%5csecret.txt",
    b"/img/%2e%2e/%2e%2e/secret.txt",
    b"/img/../../secret.txt",
    b"/img/..%2f..%2fsecret.txt",
    b"/%2fetc%2fpasswd",
    b"/%2f%2e%2e%2fsecret.txt",
    b"//etc/passwd",
    b"///etc/passwd",
    b"/..;/secret.txt",
    b"/%00",
    b"/secret.txt%00.png",
    b"/%00/../secret.txt",
    b"/%252e%252e/secret.txt",
    b"/%c0%ae%c0%ae/secret.txt",
    b"/%u002e%u002e/secret.txt",
    b"/leak.txt",
    b"/leak",
    b"/up/secret.txt",
    b"/up/secret",
    b"/up/dist/index.html",
    b"/abs.txt",
    b"/../dist-evil/x.txt",
    b"/%2e%2e/dist-evil/x.txt",
    b"/..",
    b"/../",
    b"/img/..",
    b"/" + b"a" * 300 + b".js",
    b"/" + b"a/" * 3000,
    b"/" + b"../" * 3000 + b"secret.txt",
    b"/" + b"%2e%2e%2f" * 1000 + b"etc/passwd",
    b"/" + b"x" * 20000,
    b"/" + b"x" * 20000 + b".txt",
    b"/ann@campus.test/../../secret.txt",
    b"http://localhost/../secret.txt",
    b"*",
]


@pytest.mark.parametrize("target", TRAVERSALS, ids=[t[:40].decode("latin1") for t in TRAVERSALS])
@pytest.mark.gen_test
async def test_no_path_reads_outside_the_roots(
    http_server: Any, http_port: int, target: bytes
) -> None:
    status, head, body = await raw_get(http_port, target)
    assert SECRET not in body
    assert b"root:" not in body  # /etc/passwd
    assert SECRET not in head
    assert status != 500
    if status == 0:
        return  # the server refused to read the request at all: nothing served
    assert status == 200 or 400 <= status < 500, (status, head)
    if status == 200:
        assert body == INDEX, body[:200]


@pytest.mark.parametrize("target", [b"http://localhost/robots.txt", b"*"])
@pytest.mark.gen_test
async def test_unroutable_targets_are_json_errors(
    http_server: Any, http_port: int, target: bytes
) -> None:
    status, head, body = await raw_get(http_port, target)
    assert 400 <= status < 500, head
    assert b"Content-Type: application/json" in head, head
    assert set(json.loads(body)) == {"errorMessage"}


@pytest.mark.parametrize(
    "target", [b"/leak.txt", b"/up/secret.txt", b"/abs.txt", b"/../secret.txt"]
)
@pytest.mark.gen_test
async def test_head_does_not_probe_outside_the_roots(
    http_server: Any, http_port: int, target: bytes
) -> None:
    status, head, _ = await raw_get(http_port, target, method=b"HEAD")
    assert status == 404, head
    assert f"Content-Length: {len(SECRET)}\r\n".encode() not in head + b"\r\n"


@pytest.mark.gen_test
async def test_symlinks_out_of_a_root_are_404(fetch: Fetch) -> None:
    for path in ("/leak.txt", "/up/secret.txt", "/abs.txt", "/up/dist-evil/x.txt"):
        response = await fetch(path)
        assert_json_404(response)
        assert SECRET not in response.body


@pytest.mark.gen_test
async def test_symlink_out_of_a_root_without_extension_is_the_shell(fetch: Fetch) -> None:
    for path in ("/leak", "/up/secret"):
        assert_shell(await fetch(path))


@pytest.mark.gen_test
async def test_symlink_inside_the_roots_is_served(fetch: Fetch, root: Path) -> None:
    (root / "dist" / "alias.js").symlink_to(root / "dist" / "app.js")
    response = await fetch("/alias.js")
    assert response.code == 200
    assert response.body == APP_JS


@pytest.mark.gen_test
async def test_the_client_sends_traversals_unchanged(fetch: Fetch) -> None:
    """The same probes through Tornado's own client: it must not turn them into a leak."""
    for target in TRAVERSALS[:30]:
        if b"\\" in target or b"%00" in target or not target.startswith(b"/"):
            continue
        response = await fetch(target.decode())
        assert SECRET not in response.body
        assert response.code == 200 or 400 <= response.code < 500
        if response.code == 200:
            assert response.body == INDEX


# --- the frontend needs no session store -----------------------------------------------


class TestStoreDown:
    @pytest.fixture
    def app(
        self, services: Services, config: Any, clock: Any, root: Path
    ) -> tornado.web.Application:
        sessions = build_sessions(config, DownStore(), clock=clock)
        broken = Services(config=config, sessions=sessions, users=services.users)
        return make_app(broken, root=str(root))

    @pytest.mark.gen_test
    async def test_frontend_is_served(self, fetch: Fetch, services: Services) -> None:
        cookie = services.sessions.signer.sign("campus.sid", new_session_id())
        for path, content in [
            ("/", INDEX),
            ("/app.js", APP_JS),
            ("/robots.txt", ROBOTS),
            ("/deep/link", INDEX),
            ("/login", INDEX),
        ]:
            for headers in ({}, {"Cookie": f"campus.sid={cookie}"}):
                response = await fetch(path, headers=headers)
                assert response.code == 200, (path, response.code, response.body[:200])
                assert response.body == content
                assert session_cookie(response) is None
        assert_json_404(await fetch("/missing.js"))

    @pytest.mark.gen_test
    async def test_api_me_is_503(self, fetch: Fetch, services: Services) -> None:
        cookie = services.sessions.signer.sign("campus.sid", new_session_id())
        response = await fetch("/api/me", headers={"Cookie": f"campus.sid={cookie}"})
        assert response.code == 503, response.body
        assert response.headers.get("Content-Type", "").startswith("application/json")
        assert json.loads(response.body) == {"errorMessage": "Session store unavailable"}
        assert response.headers.get("Retry-After")
        assert int(response.headers["Retry-After"]) >= 1
        assert response.headers.get("Cache-Control") == "no-store"
        assert response.headers.get_list("Set-Cookie") == []

    @pytest.mark.gen_test
    async def test_api_me_without_a_cookie_is_not_a_500(self, fetch: Fetch) -> None:
        """No cookie, nothing to look up: anonymous (401) or the outage (503), never 500."""
        response = await fetch("/api/me")
        assert response.code in (401, 503), response.body
        body = json.loads(response.body)
        assert body in (
            {"errorMessage": "Not logged in"},
            {"errorMessage": "Session store unavailable"},
        )
        assert response.headers.get_list("Set-Cookie") == []


class TestNoBuiltShell:
    """Without a built dist/index.html the shell routes are a JSON 404, not a crash."""

    @pytest.fixture
    def app(self, services: Services, tmp_path: Path) -> tornado.web.Application:
        (tmp_path / "static").mkdir()
        (tmp_path / "dist").mkdir()
        (tmp_path / "static" / "robots.txt").write_bytes(ROBOTS)
        return make_app(services, root=str(tmp_path))

    @pytest.mark.gen_test
    async def test_shell_routes_are_404(self, fetch: Fetch) -> None:
        for path in ("/", "/deep/link", "/index.html"):
            assert_json_404(await fetch(path))
        response = await fetch("/robots.txt")
        assert response.code == 200
        assert response.body == ROBOTS

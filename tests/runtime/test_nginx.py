"""config/nginx/campus.conf in Debian's nginx, over TLS on ports other than 443, in front of
two campus processes on one Redis: what a browser does, over HTTP/2 and HTTP/1.1 (curl), in
Chromium, and through a rolling restart under load.

nginx runs the shipped file changed only in its EDIT lines (tests/support/nginx_proxy.py).
campus runs as in production, with ``trust_proxy`` on and ``secure = "auto"``, so that a Secure
cookie shows that X-Forwarded-Proto arrived. Each client connects from a loopback address of its own
(127.0.0.x) while nginx reaches campus from 127.0.0.1: the address campus logs and throttles
tells where it came from.
"""

from __future__ import annotations

import gzip
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import threading
import time
import tomllib
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from campus.config.schema import ServerConfig
from tests.support.apps import PASSWORD, USERS
from tests.support.nginx_proxy import (
    CONF,
    NGINX,
    Curl,
    CurlError,
    Nginx,
    Reply,
    Site,
    http2_directive,
    make_certificate,
    render,
)
from tests.support.servers import REPO, SECRET, Campus, RedisServer, campus_env, free_port

_MISSING = [str(NGINX)] * (not os.access(NGINX, os.X_OK))
_MISSING += [tool for tool in ("curl", "openssl") if shutil.which(tool) is None]
if _MISSING:
    pytest.skip(
        f"nginx tests need {', '.join(_MISSING)}: apt-get install nginx curl openssl"
        " (.ci/run installs them)",
        allow_module_level=True,
    )

ANN = dict(USERS[0])
ANN_LOGIN = {"email": "ann@campus.test", "password": PASSWORD}
PROTOCOLS = {"http2": "2", "http1.1": "1.1"}


@dataclass
class Stack:
    site: Site
    proxy: Nginx
    campuses: list[Campus]
    env: dict[str, str]
    directory: Path
    check_output: str = ""
    stopped_logs: list[str] = field(default_factory=list)

    def curl(self, version: str, source: str = "127.0.0.2") -> Curl:
        return Curl(self.site, self.directory, http2=version == "2", source=source)

    def campus_log(self) -> str:
        """Everything every campus process wrote, restarted ones included."""
        running = [campus.log() for campus in self.campuses]
        return "".join(self.stopped_logs + running)


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, users_file: Path, redis_server: RedisServer
) -> Iterator[Stack]:
    redis_server.client().flushall()
    env = campus_env(
        CAMPUS_ENV="production",
        CAMPUS_SESSION_SECRET=SECRET,
        CAMPUS_REDIS_URL=redis_server.url,
        CAMPUS_USERS_FILE=str(users_file),
        CAMPUS_SERVER_TRUST_PROXY="true",
        CAMPUS_SESSION_SECURE="auto",  # production says true: "auto" shows X-Forwarded-Proto
    )
    directory = tmp_path_factory.mktemp("nginx")
    cert, key = make_certificate(directory, "localhost")
    campuses: list[Campus] = []
    stopped: list[str] = []  # the logs of processes a test restarted
    proxy: Nginx | None = None
    try:
        campuses += [Campus(env), Campus(env)]
        site = Site(
            server_name="localhost",
            certificate=cert,
            key=key,
            https_port=free_port(),
            http_port=free_port(),
            upstreams=tuple(campus.port for campus in campuses),
        )
        proxy = Nginx(
            directory / "prefix", render(CONF.read_text(), site, http2_on=http2_directive())
        )
        check_output = proxy.check()
        proxy.start(site.https_port)
        yield Stack(site, proxy, campuses, env, directory, check_output, stopped)
    finally:
        errors = proxy.stop() if proxy is not None else ""
        logs = [campus.stop() for campus in campuses]
    assert not re.search(r"\[(emerg|alert|crit)\]", errors), errors
    for log in logs + stopped:
        assert "Traceback" not in log, log


@pytest.fixture(params=list(PROTOCOLS.values()), ids=list(PROTOCOLS))
def version(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def curl(stack: Stack, version: str) -> Curl:
    return stack.curl(version)


def cookie_attributes(set_cookie: str) -> set[str]:
    """The attribute names of a Set-Cookie line, lower case (secure, httponly, path, ...)."""
    return {part.split("=", 1)[0].strip().lower() for part in set_cookie.split(";")[1:]}


def sign_in(curl: Curl, **login: str) -> str:
    """POST /login as the page at the site's origin does; the cookie to send back."""
    origin = curl.site.origin
    headers = [("Origin", origin), ("Referer", f"{origin}/login")]
    reply = curl("POST", "/login", headers=headers, body={**ANN_LOGIN, **login})
    assert reply.status == 200, reply.body
    set_cookie = reply.cookie()
    assert set_cookie is not None
    return set_cookie.split(";", 1)[0]


def upstreams_of(log: list[str], marker: str) -> list[str]:
    """The campus processes (address:port) nginx sent each request naming *marker* to."""
    found = []
    for line in log:
        if marker in line:
            tried = re.search(r"\[([^\]]*)\] \[[^\]]*\]$", line)
            assert tried is not None, line
            found += [address.strip() for address in tried[1].split(",")]
    return found


def test_nginx_t_accepts_the_file_as_edited(stack: Stack) -> None:
    assert "syntax is ok" in stack.check_output and "test is successful" in stack.check_output
    assert "[warn]" not in stack.check_output, stack.check_output


def test_the_http2_edit_for_newer_nginx_keeps_every_listen_line(tmp_path: Path) -> None:
    # What the file's head says to do on nginx 1.25.1+ (Debian 13); the stack above runs it
    # there, this checks the edit itself wherever the suite runs.
    site = Site("localhost", tmp_path / "c.pem", tmp_path / "k.pem", 8443, 8080, (8001,))
    old, new = render(CONF.read_text(), site), render(CONF.read_text(), site, http2_on=True)
    listens = [line.strip() for line in old.splitlines() if line.strip().startswith("listen")]
    assert [line for line in listens if " http2" in line] == [
        "listen 127.0.0.1:8443 ssl http2;           # EDIT: the port, or address:port",
        "listen 127.0.0.1:8443 ssl http2 default_server;   # EDIT: the same port (or"
        " address:port) as above",
    ]
    lines = [line.strip() for line in new.splitlines()]
    assert not [line for line in lines if line.startswith("listen") and " http2" in line]
    for listen in ("listen 127.0.0.1:8443 ssl;", "listen 127.0.0.1:8443 ssl default_server;"):
        after = next(i for i, line in enumerate(lines) if line.startswith(listen))
        assert lines[after + 1] == "http2 on;"


def test_nginx_drops_idle_connections_before_campus_does() -> None:
    """Else nginx may send a request down a connection campus is closing at that moment."""
    upstream = re.search(r"^upstream campus \{(.*?)^\}", CONF.read_text(), re.M | re.S)
    assert upstream is not None
    nginx_idle = re.search(r"^\s*keepalive_timeout (\d+)s;", upstream[1], re.M)
    assert nginx_idle is not None and re.search(r"^\s*keepalive \d+;", upstream[1], re.M)
    production = tomllib.loads((REPO / "config" / "production.toml").read_text())
    campus_idle = min(ServerConfig().idle_timeout, production["server"]["idle_timeout"])
    assert int(nginx_idle[1]) < campus_idle


def test_sign_in_on_another_port_both_processes_serve_it_then_sign_out(
    stack: Stack, curl: Curl, version: str
) -> None:
    site = stack.site
    origin = [("Origin", site.origin)]
    reply = curl("POST", "/login", headers=origin, body=ANN_LOGIN)
    assert reply.version == version
    assert (reply.status, reply.json()) == (200, {"user": ANN})
    set_cookie = reply.cookie()
    assert set_cookie is not None
    assert {"secure", "httponly", "samesite", "path"} <= cookie_attributes(set_cookie)
    cookie = set_cookie.split(";", 1)[0]

    marker = f"me-{uuid.uuid4().hex}"
    for _ in range(4):
        me = curl("GET", f"/api/me?{marker}", headers=[("Cookie", cookie)])
        assert (me.status, me.json()) == (200, {"user": ANN})
    served = set(upstreams_of(stack.proxy.access_log(), marker))
    assert served == {f"127.0.0.1:{port}" for port in site.upstreams}

    out = curl("POST", "/logout", headers=[*origin, ("Cookie", cookie)])
    assert (out.status, out.json()) == (200, {})
    assert out.header("Clear-Site-Data") == '"cache", "storage"'
    expired = out.cookie()
    assert expired is not None and expired.split(";", 1)[0] in {"campus.sid=", 'campus.sid=""'}
    marker = f"gone-{uuid.uuid4().hex}"
    for _ in range(2):
        gone = curl("GET", f"/api/me?{marker}", headers=[("Cookie", cookie)])
        assert (gone.status, gone.json()) == (401, {"errorMessage": "Not logged in"})
    assert len(set(upstreams_of(stack.proxy.access_log(), marker))) == 2


def test_the_secure_cookie_comes_from_x_forwarded_proto(stack: Stack, curl: Curl) -> None:
    direct = urllib.request.Request(
        f"http://127.0.0.1:{stack.site.upstreams[0]}/login", data=json.dumps(ANN_LOGIN).encode()
    )
    with urllib.request.urlopen(direct, timeout=10) as response:  # plain HTTP, no proxy
        assert "secure" not in cookie_attributes(response.headers["Set-Cookie"])

    forged = [("Origin", stack.site.origin), ("X-Forwarded-Proto", "http")]
    reply = curl("POST", "/login", headers=forged, body=ANN_LOGIN)  # nginx's $scheme wins
    assert reply.status == 200
    assert "secure" in cookie_attributes(reply.cookie() or "")


@pytest.mark.parametrize(
    "page",
    [
        [("Origin", "https://evil.example")],
        [("Origin", "https://localhost")],  # our host name, another port
        [("Origin", "http://localhost:{port}")],  # our host and port, another scheme
        [("Origin", "null")],
        [("Referer", "https://evil.example/login")],
    ],
    ids=["other-site", "other-port", "other-scheme", "null", "referer"],
)
def test_a_cross_origin_post_is_refused(
    stack: Stack, curl: Curl, page: list[tuple[str, str]]
) -> None:
    headers = [(name, value.format(port=stack.site.https_port)) for name, value in page]
    reply = curl("POST", "/login", headers=headers, body=ANN_LOGIN)
    assert (reply.status, reply.json()) == (403, {"errorMessage": "Cross-origin request refused"})
    assert reply.cookie() is None


def test_a_cross_origin_logout_leaves_the_session(stack: Stack, curl: Curl) -> None:
    cookie = sign_in(curl)
    foreign = [("Origin", "https://evil.example"), ("Cookie", cookie)]
    assert curl("POST", "/logout", headers=foreign).status == 403
    assert curl("GET", "/api/me", headers=[("Cookie", cookie)]).status == 200


#: Two loopback addresses per protocol: the throttle counts are theirs alone.
ADDRESSES = {"2": ("127.0.0.5", "127.0.0.6"), "1.1": ("127.0.0.7", "127.0.0.8")}


def test_the_client_address_comes_from_nginx_never_from_the_client(
    stack: Stack, version: str
) -> None:
    """Access log and login throttle: the address nginx saw, whatever X-Forwarded-For said."""
    address, other = ADDRESSES[version]
    attacker, bystander = stack.curl(version, address), stack.curl(version, other)
    origin = ("Origin", stack.site.origin)
    run = uuid.uuid4().hex[:8]
    for attempt in range(5):  # each guess claims to come from other addresses
        forged = [("X-Forwarded-For", f"198.51.100.{attempt + 1}")]
        forged += [("X-Forwarded-For", f"203.0.113.{attempt + 1}")] * (attempt % 2)  # twice
        guess = {"email": f"nobody-{run}-{attempt}@campus.test", "password": "wrong"}
        assert attacker("POST", "/login", headers=[origin, *forged], body=guess).status == 403
    claim = ("X-Forwarded-For", f"{other}, 198.51.100.99")
    throttled = attacker("POST", "/login", headers=[origin, claim], body=ANN_LOGIN)
    assert throttled.status == 429 and throttled.header("Retry-After")

    # Another client claiming to be the throttled address is not throttled.
    claim = ("X-Forwarded-For", address)
    assert bystander("POST", "/login", headers=[origin, claim], body=ANN_LOGIN).status == 200

    log = stack.campus_log()
    assert any(address in line and "/login" in line for line in log.splitlines()), log
    assert "198.51.100." not in log and "203.0.113." not in log


def test_the_request_id_is_nginx_s_never_the_client_s(stack: Stack, curl: Curl) -> None:
    """The client's X-Request-ID (valid by campus's own rule) is replaced by $request_id."""
    chosen = f"chosen-by-client-{uuid.uuid4().hex[:8]}"
    reply = curl("GET", "/api/me", headers=[("X-Request-ID", chosen)])
    assert reply.status == 401
    assert re.fullmatch(r"[0-9a-f]{32}", reply.header("X-Request-ID") or ""), reply.headers
    assert chosen not in stack.campus_log()


def test_one_address_posting_logins_is_rate_limited_by_nginx(stack: Stack, version: str) -> None:
    """Past the burst, POST /login is 429 from nginx, with JSON and Retry-After; campus never
    sees those. The bodies are bad (400 from campus): no campus throttle counts them."""
    client = stack.curl(version, {"2": "127.0.0.11", "1.1": "127.0.0.12"}[version])
    origin = ("Origin", stack.site.origin)
    replies = [client("POST", "/login", headers=[origin], body=b"{}") for _ in range(30)]
    codes = [reply.status for reply in replies]
    assert codes[:20] == [400] * 20, codes  # the burst
    limited = [reply for reply in replies if reply.status == 429]
    assert len(limited) >= 5, codes
    assert json.loads(limited[0].body) == {"errorMessage": "Too many sign-ins, try again shortly"}
    assert limited[0].header("Retry-After") == "1"
    assert limited[0].header("Content-Type") == "application/json"
    # GET /login (the sign-in page) is never limited, from that address too.
    assert client("GET", "/login").status == 200


def test_cookies_split_by_http2_reach_campus(stack: Stack) -> None:
    """HTTP/2 clients may send each cookie in a field of its own; one of them is the session."""
    curl = stack.curl("2")
    cookie = sign_in(curl)
    split = [("Cookie", "theme=dark"), ("Cookie", cookie), ("Cookie", "lang=en")]
    me = curl("GET", "/api/me", headers=split)
    assert me.version == "2"
    assert (me.status, me.json()) == (200, {"user": ANN})


def decoded(reply: Reply) -> bytes:
    if reply.header("Content-Encoding") == "gzip":
        return gzip.decompress(reply.body)
    return reply.body


def test_the_spa_shell_and_static_files(stack: Stack, curl: Curl, version: str) -> None:
    browser = [("Accept", "text/html"), ("Accept-Encoding", "gzip")]
    shell = curl("GET", "/account", headers=browser)  # a deep link
    assert (shell.status, shell.version) == (200, version)
    assert (shell.header("Content-Type") or "").startswith("text/html")
    assert b'<script type="module" src="/js/main.js">' in decoded(shell)
    assert shell.header("Cache-Control") == "no-cache"
    assert "frame-ancestors 'none'" in (shell.header("Content-Security-Policy") or "")
    assert shell.header("Strict-Transport-Security") == "max-age=31536000"
    assert shell.header("Server") == "nginx"  # no version
    etag = shell.header("ETag")
    assert etag
    again = curl("GET", "/account", headers=[*browser, ("If-None-Match", etag)])
    assert again.status == 304

    for path, kind in [
        ("dist/js/main.js", "javascript"),
        ("dist/css/campus.css", "text/css"),
        ("static/favicon.svg", "image/svg+xml"),
        ("static/robots.txt", "text/plain"),
    ]:
        reply = curl("GET", "/" + path.split("/", 1)[1], headers=browser)
        assert reply.status == 200, path
        assert kind in (reply.header("Content-Type") or ""), path
        assert decoded(reply) == (REPO / path).read_bytes()
    assert curl("GET", "/js/missing.js").status == 404
    assert curl("GET", "/api/missing").json() == {"errorMessage": "Not found"}


def test_other_host_names_never_reach_campus(stack: Stack, version: str) -> None:
    curl = stack.curl(version)
    probe = f"/probe-{uuid.uuid4().hex}"
    with pytest.raises(CurlError):  # another name at the TLS handshake
        curl("GET", probe, host="other.test")
    with pytest.raises(CurlError):  # our name for TLS, another one in Host
        curl("GET", probe, headers=[("Host", f"other.test:{stack.site.https_port}")])
    assert curl("GET", "/").status == 200
    assert probe not in stack.campus_log()


def test_plain_http_only_redirects_to_https(stack: Stack) -> None:
    site = stack.site
    url = f"http://localhost:{site.http_port}/account?tab=1"
    reply = stack.curl("1.1")("GET", "", url=url)
    assert reply.status == 301
    assert reply.header("Location") == f"https://localhost:{site.https_port}/account?tab=1"
    assert reply.cookie() is None and reply.header("Server") == "nginx"


def test_chromium_signs_in_reloads_a_deep_link_and_signs_out(stack: Stack) -> None:
    from playwright.sync_api import expect, sync_playwright

    from tests.e2e.conftest import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, TIMEOUT_MS

    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"Chromium is not installed at {CHROMIUM}: apt-get install chromium", pytrace=False
        )
    origin = stack.site.origin
    problems: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[*CHROMIUM_ARGS, "--ignore-certificate-errors"],  # the test's own certificate
            timeout=30_000,
        )
        page = browser.new_context(base_url=origin).new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
        page.on("console", lambda message: console_errors(message, problems))
        heading = page.get_by_role("heading", level=1)
        try:
            page.goto("/account")
            expect(page).to_have_url(f"{origin}/login?next=%2Faccount")
            page.get_by_label("Email address").fill(ANN_LOGIN["email"])
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Sign in", exact=True).click()
            expect(page).to_have_url(f"{origin}/account")
            expect(heading).to_have_text("Your account")

            page.reload()  # the deep link through nginx: the SPA shell, then the route
            expect(heading).to_have_text("Your account")
            expect(
                page.get_by_role("definition").filter(has_text=ANN_LOGIN["email"])
            ).to_be_visible()
            navigation = "performance.getEntriesByType('navigation')[0].nextHopProtocol"
            assert page.evaluate(navigation) == "h2"
            (cookie,) = [c for c in page.context.cookies() if c["name"] == "campus.sid"]
            assert cookie["secure"] and cookie["httpOnly"]

            page.get_by_role("banner").get_by_role("button", name="Sign out").click()
            expect(page).to_have_url(f"{origin}/login")
            signed_out = page.get_by_role("main").get_by_text("You have been signed out.")
            expect(signed_out).to_be_visible()
            assert page.evaluate("fetch('/api/me').then(answer => answer.status)") == 401
        except BaseException:
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "test_nginx-chromium.png"), full_page=True)
            raise
        finally:
            browser.close()
    assert problems == [], problems


def console_errors(message: Any, problems: list[str]) -> None:
    """Script errors and CSP violations; not Chromium's lines about 401 answers."""
    if message.type == "error" and not message.text.startswith("Failed to load resource"):
        problems.append(f"console: {message.text}")


class _Connection(http.client.HTTPSConnection):
    """HTTPS to nginx on 127.0.0.1, with the site's name for SNI and the certificate check."""

    def connect(self) -> None:
        sock = socket.create_connection(("127.0.0.1", self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


class Load:
    """Clients sending GET /api/me (signed in) and POST /logout (signed out, so harmless)
    through nginx on keep-alive connections, in turn, until stopped."""

    def __init__(self, site: Site, cookie: str, clients: int = 4) -> None:
        self.site, self.cookie = site, cookie
        self.context = ssl.create_default_context(cafile=str(site.certificate))
        self.lock = threading.Lock()
        self.answered: list[float] = []  # when each good answer came
        self.failed: list[str] = []
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._client, daemon=True) for _ in range(clients)]

    @property
    def sent(self) -> int:
        return len(self.answered) + len(self.failed)

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(30)

    def wait_for(self, answers: int) -> None:
        """Until *answers* more requests have been answered (or the test gives up)."""
        target, deadline = len(self.answered) + answers, time.monotonic() + 20
        while len(self.answered) < target and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(self.answered) >= target, f"the load stalled: {self.failed[-3:]}"

    def answered_between(self, start: float, end: float) -> int:
        with self.lock:
            return sum(start <= moment <= end for moment in self.answered)

    def _client(self) -> None:
        site = self.site
        connection = _Connection(
            site.server_name, site.https_port, context=self.context, timeout=10
        )
        requests = [
            ("GET", "/api/me", {"Cookie": self.cookie}, {"user": ANN}),
            ("POST", "/logout", {"Content-Length": "0"}, {}),
        ]
        sent = 0
        while not self.stopping.is_set():
            method, path, headers, expected = requests[sent % len(requests)]
            sent += 1
            try:
                connection.request(method, path, headers=headers)
                response = connection.getresponse()
                body = response.read()
                ok = response.status == 200 and json.loads(body) == expected
                outcome = "" if ok else f"{response.status} {body[:100]!r}"
            except (OSError, http.client.HTTPException, ValueError) as exc:
                outcome = f"{type(exc).__name__}: {exc}"
                connection.close()
            with self.lock:
                if outcome:
                    self.failed.append(outcome)
                else:
                    self.answered.append(time.monotonic())
        connection.close()


def test_a_rolling_restart_through_nginx_fails_no_request(stack: Stack) -> None:
    """Each process in turn gets SIGTERM and comes back on its port, under steady load.

    nginx sends a request whose connection failed (refused while the process is down, or
    closed by a process that is draining) to the other process — POSTs included, which the
    file allows because every campus POST may be repeated — and none reaches the client as
    an error.
    """
    cookie = sign_in(stack.curl("1.1"))
    earlier = len(stack.proxy.access_log())
    downtimes = []
    with Load(stack.site, cookie) as load:
        load.wait_for(100)
        for number, old in enumerate(list(stack.campuses)):
            stopped_at = time.monotonic()
            stack.stopped_logs.append(old.stop(signal.SIGTERM))
            assert old.process.returncode == 0
            stack.campuses[number] = Campus(stack.env, port=old.port)
            downtimes.append((stopped_at, time.monotonic()))
            load.wait_for(100)
    log = stack.proxy.access_log()[earlier:]
    retried = [line for line in log if re.search(r"\[[^\]]*,", line)]
    print(
        f"\nrolling restart: {load.sent} requests sent, {len(load.failed)} failed,"
        f" {len(retried)} retried by nginx on the other process;"
        f" downtimes {[round(end - start, 2) for start, end in downtimes]} s"
    )
    assert load.failed == [], load.failed[:10]
    for start, end in downtimes:  # the load did run while each process was down
        assert load.answered_between(start, end) > 0
    marker = "/api/me"
    for campus in stack.campuses:  # and nginx came back to each restarted process
        assert marker in campus.log()

"""Bad input at the HTTP API: exact statuses, JSON error bodies, never a 500; cookie headers.

Every error answer is ``{"errorMessage": "..."}`` as JSON, without a traceback or HTML.
Tests that make failed logins keep to a handful each, below the per-address throttle.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import tornado.web
from tornado.httpclient import HTTPResponse

from campus.accounts.users import MAX_EMAIL, MAX_PASSWORD
from campus.session import CookieSigner, StoreUnavailable
from campus.session.store import new_session_id
from campus.session.stores.memory import MemoryStore
from campus.web.app import make_app
from campus.web.services import Services
from tests.support.apps import (
    ANN,
    PASSWORD,
    DownStore,
    Fetch,
    error_of,
    json_of,
    logged_in,
    login_body,
    me,
    post_login,
    session_cookie,
)
from tests.support.servers import REPO

MAX_BODY = 64 * 1024
SESSION_ID = re.compile(r"[A-Za-z0-9_-]{43,}")


# --- helpers ---------------------------------------------------------------------------


def set_cookie_headers(response: HTTPResponse, name: str = "campus.sid") -> list[str]:
    return [h for h in response.headers.get_list("Set-Cookie") if h.startswith(name + "=")]


def cookie_attributes(header: str) -> dict[str, str]:
    """The attributes of a Set-Cookie header (names lower-cased), without the value."""
    _, *parts = header.split(";")
    attributes = {}
    for part in parts:
        name, _, value = part.strip().partition("=")
        attributes[name.lower()] = value
    return attributes


def decoded_id(value: str) -> str:
    """The payload of a Tornado v2 signed value: 2|1:kv|n:ts|n:name|n:b64value|sig."""
    fields = value.split("|")
    assert fields[0] == "2", value
    assert len(fields) == 6, value
    payload = fields[4].split(":", 1)[1]
    return base64.b64decode(payload).decode("ascii")


# --- POST /login: bad bodies -----------------------------------------------------------


BAD_BODIES = {
    "empty": b"",
    "not-json": b"email=ann@campus.test&password=x",
    "truncated-json": b'{"email": "ann@campus.test", "password": ',
    "list": b'["ann@campus.test", "x"]',
    "string": b'"ann@campus.test"',
    "number": b"42",
    "null": b"null",
    "true": b"true",
    "empty-object": b"{}",
    "invalid-utf8": b'{"email": "ann\xff@campus.test", "password": "x"}',
    "invalid-utf8-only": b"\xff\xfe\xfd",
    "huge-integer": b'{"email": "a@b.c", "password": ' + b"9" * 20000 + b"}",
    "nan-garbage": b'{"email": "a@b.c", "password": Nope}',
}


@pytest.mark.parametrize("body", BAD_BODIES.values(), ids=BAD_BODIES.keys())
@pytest.mark.gen_test
async def test_login_bad_body_is_400(fetch: Fetch, body: bytes) -> None:
    response = await post_login(fetch, body)
    error_of(response, 400)
    assert response.headers.get("Cache-Control") == "no-store"
    assert session_cookie(response) is None


@pytest.mark.gen_test
async def test_login_deeply_nested_json_is_400(fetch: Fetch) -> None:
    body = b"[" * 50000  # under 64 KiB, far deeper than Python's recursion limit
    response = await post_login(fetch, body)
    error_of(response, 400)


FIELD_CASES = {
    "missing-email": ({"password": PASSWORD}, "email"),
    "missing-password": ({"email": ANN}, "password"),
    "email-number": ({"email": 1, "password": PASSWORD}, "email"),
    "email-list": ({"email": [ANN], "password": PASSWORD}, "email"),
    "email-object": ({"email": {"a": ANN}, "password": PASSWORD}, "email"),
    "email-null": ({"email": None, "password": PASSWORD}, "email"),
    "email-bool": ({"email": True, "password": PASSWORD}, "email"),
    "password-number": ({"email": ANN, "password": 123456}, "password"),
    "password-list": ({"email": ANN, "password": [PASSWORD]}, "password"),
    "password-object": ({"email": ANN, "password": {"p": PASSWORD}}, "password"),
    "password-null": ({"email": ANN, "password": None}, "password"),
    "password-false": ({"email": ANN, "password": False}, "password"),
    "email-too-long": (
        {"email": "a" * (MAX_EMAIL - 11) + "@campus.test", "password": "x"},
        "email",
    ),
    "password-too-long": ({"email": ANN, "password": "p" * (MAX_PASSWORD + 1)}, "password"),
}


@pytest.mark.parametrize(("payload", "field"), FIELD_CASES.values(), ids=FIELD_CASES.keys())
@pytest.mark.gen_test
async def test_login_bad_field_is_400(fetch: Fetch, payload: dict[str, Any], field: str) -> None:
    response = await post_login(fetch, json.dumps(payload))
    message = error_of(response, 400)
    assert field in message.lower()
    assert response.headers.get("Cache-Control") == "no-store"
    assert session_cookie(response) is None


@pytest.mark.gen_test
async def test_login_length_limits_are_inclusive(fetch: Fetch) -> None:
    """254 characters of email and 1024 of password are still a login attempt (403, not 400)."""
    email = "a" * (MAX_EMAIL - len("@campus.test")) + "@campus.test"
    assert len(email) == MAX_EMAIL
    response = await post_login(fetch, login_body(email, "x"))
    assert error_of(response, 403) == "Permission denied!"
    response = await post_login(fetch, login_body(ANN, "p" * MAX_PASSWORD))
    assert error_of(response, 403) == "Permission denied!"


@pytest.mark.gen_test
async def test_login_extra_fields_are_ignored(fetch: Fetch) -> None:
    body = json.dumps({"email": ANN, "password": PASSWORD, "remember": True, "user": {"x": 1}})
    response = await post_login(fetch, body)
    assert json_of(response)["user"]["email"] == ANN


@pytest.mark.gen_test
async def test_login_odd_strings_are_a_plain_403(fetch: Fetch) -> None:
    """Lone surrogates, NULs and control characters are just wrong credentials."""
    for email, password in [
        ("\ud800@campus.test", "x"),
        (ANN, "\ud800\u0000\u202e"),
        ("\u0000", ""),
    ]:
        response = await post_login(fetch, json.dumps({"email": email, "password": password}))
        assert error_of(response, 403) == "Permission denied!"
        assert session_cookie(response) is None


@pytest.mark.gen_test
async def test_login_body_over_64k_with_content_length_is_413(fetch: Fetch) -> None:
    padding = " " * MAX_BODY
    body = '{"email": "ann@campus.test", "password": "x"}' + padding
    assert len(body) > MAX_BODY
    response = await post_login(fetch, body)
    error_of(response, 413)
    assert response.headers.get("Cache-Control") == "no-store"
    assert session_cookie(response) is None


@pytest.mark.gen_test
async def test_login_body_of_exactly_64k_is_read(fetch: Fetch) -> None:
    start = login_body()
    body = start + " " * (MAX_BODY - len(start))
    assert len(body) == MAX_BODY
    response = await post_login(fetch, body)
    assert json_of(response)["user"]["email"] == ANN


@pytest.mark.gen_test
async def test_login_chunked_body_over_64k_is_413(fetch: Fetch) -> None:
    sent = []

    async def produce(write: Callable[[bytes], Awaitable[None]]) -> None:
        await write(b'{"email": "ann@campus.test", "password": "x"}')
        for _ in range(5):
            await write(b" " * 20000)
        sent.append(True)

    response = await fetch(
        "/login",
        method="POST",
        body_producer=produce,
        headers={"Content-Type": "application/json"},
    )
    assert sent  # no Content-Length: Tornado's client sent it chunked
    error_of(response, 413)
    assert session_cookie(response) is None


@pytest.mark.gen_test
async def test_login_small_chunked_body_works(fetch: Fetch) -> None:
    async def produce(write: Callable[[bytes], Awaitable[None]]) -> None:
        body = login_body().encode()
        await write(body[:10])
        await write(body[10:])

    response = await fetch("/login", method="POST", body_producer=produce)
    assert json_of(response)["user"]["email"] == ANN


# --- POST /login: credentials ----------------------------------------------------------


@pytest.mark.gen_test
async def test_unknown_email_and_wrong_password_answer_the_same(fetch: Fetch) -> None:
    unknown = await post_login(fetch, login_body("nobody@campus.test", PASSWORD))
    wrong = await post_login(fetch, login_body(ANN, PASSWORD + "!"))
    assert error_of(unknown, 403) == "Permission denied!"
    assert error_of(wrong, 403) == "Permission denied!"
    assert unknown.body == wrong.body
    assert unknown.headers.get("Content-Type") == wrong.headers.get("Content-Type")
    for response in (unknown, wrong):
        assert response.headers.get("Cache-Control") == "no-store"
        assert session_cookie(response) is None


@pytest.mark.gen_test
async def test_email_matches_case_insensitively_with_spaces(fetch: Fetch) -> None:
    response = await post_login(fetch, login_body("  ANN@Campus.TEST \t", PASSWORD))
    assert json_of(response)["user"]["email"] == ANN
    # the password is not normalised
    response = await post_login(fetch, login_body(ANN, " " + PASSWORD))
    assert error_of(response, 403) == "Permission denied!"
    response = await post_login(fetch, login_body(ANN, PASSWORD.upper()))
    assert error_of(response, 403) == "Permission denied!"


@pytest.mark.gen_test
async def test_login_answers_the_user_without_the_hash(fetch: Fetch) -> None:
    response = await post_login(fetch, login_body("bob@campus.test", PASSWORD))
    body = json_of(response)
    assert body == {"user": {"email": "bob@campus.test", "name": "Bob", "roles": ["staff"]}}
    assert b"password" not in response.body
    assert b"argon2" not in response.body
    assert response.headers.get("Cache-Control") == "no-store"
    cookie = session_cookie(response)
    assert cookie
    me_response = await me(fetch, cookie)
    assert json_of(me_response) == body
    assert b"argon2" not in me_response.body


@pytest.mark.gen_test
async def test_login_regenerates_the_session_id(fetch: Fetch, services: Services) -> None:
    first = await logged_in(fetch)
    response = await post_login(fetch, login_body("bob@campus.test"), cookie=first)
    assert json_of(response)["user"]["email"] == "bob@campus.test"
    second = session_cookie(response)
    assert second
    assert decoded_id(second) != decoded_id(first)
    # the old id is gone from the store, not merely replaced in the cookie
    assert await services.sessions.store.load(decoded_id(first), touch=None) is None
    assert error_of(await me(fetch, first), 401) == "Not logged in"
    assert json_of(await me(fetch, second))["user"]["email"] == "bob@campus.test"


@pytest.mark.gen_test
async def test_failed_login_keeps_the_existing_session(fetch: Fetch) -> None:
    cookie = await logged_in(fetch)
    response = await post_login(fetch, login_body(ANN, "wrong"), cookie=cookie)
    assert error_of(response, 403) == "Permission denied!"
    assert session_cookie(response) is None
    assert json_of(await me(fetch, cookie))["user"]["email"] == ANN


# --- cookies that mean "no session" ----------------------------------------------------


def flip(text: str, index: int) -> str:
    char = text[index]
    replacement = "A" if char != "A" else "B"
    return text[:index] + replacement + text[index + 1 :]


async def assert_anonymous(fetch: Fetch, cookie_header: str) -> None:
    response = await fetch("/api/me", headers={"Cookie": cookie_header})
    assert error_of(response, 401) == "Not logged in"
    assert response.headers.get("Cache-Control") == "no-store"
    assert set_cookie_headers(response) == []


@pytest.mark.gen_test
async def test_garbage_cookies_are_anonymous(fetch: Fetch) -> None:
    for value in [
        "garbage",
        "",
        '""',
        "2|",
        "2|1:0|",
        "2||||||",
        "2|a:b|c:d|e:f|g:h|i",
        "2|1:0|10:0000000000|10:campus.sid|0:|" + "0" * 64,
        "2|99999999999999999999999:0|1:0|1:x|1:y|z",
        "2|-1:0|1:0|1:x|1:y|z",
        "1|abc|def",
        "abc|1234567890|" + "0" * 40,
        "s:" + new_session_id() + ".signature",
        new_session_id(),
    ]:
        await assert_anonymous(fetch, f"campus.sid={value}")


@pytest.mark.gen_test
async def test_truncated_and_tampered_cookies_are_anonymous(fetch: Fetch, store_kind: str) -> None:
    cookie = await logged_in(fetch)
    signature_at = cookie.rindex("|") + 1
    payload_at = cookie.rindex("|", 0, signature_at - 1) + 1
    payload_at = cookie.index(":", payload_at) + 1
    for value in [
        cookie[:-1],
        cookie[: len(cookie) // 2],
        cookie[:signature_at],
        flip(cookie, len(cookie) - 1),
        flip(cookie, signature_at),
        flip(cookie, payload_at + 3),
        cookie.replace("campus.sid", "campus.xyz"),
        cookie + "0",
    ]:
        assert value != cookie
        await assert_anonymous(fetch, f"campus.sid={value}")
    # the genuine cookie still works: the failures above were about the values
    assert json_of(await me(fetch, cookie))["user"]["email"] == ANN


@pytest.mark.gen_test
async def test_cookie_signed_with_another_secret_is_anonymous(fetch: Fetch) -> None:
    foreign = CookieSigner(["another-secret-" * 3]).sign("campus.sid", new_session_id())
    await assert_anonymous(fetch, f"campus.sid={foreign}")


@pytest.mark.gen_test
async def test_foreign_secret_cookie_for_a_live_id_is_anonymous(fetch: Fetch) -> None:
    cookie = await logged_in(fetch)
    foreign = CookieSigner(["another-secret-" * 3]).sign("campus.sid", decoded_id(cookie))
    await assert_anonymous(fetch, f"campus.sid={foreign}")


@pytest.mark.gen_test
async def test_signed_id_the_store_never_issued_is_anonymous(
    fetch: Fetch, services: Services
) -> None:
    forged = services.sessions.signer.sign("campus.sid", new_session_id())
    await assert_anonymous(fetch, f"campus.sid={forged}")
    # a signed value that is not shaped like one of our ids
    for odd in ["short", "x" * 43 + "!", "ann@campus.test", '{"user": 1}']:
        value = services.sessions.signer.sign("campus.sid", odd)
        await assert_anonymous(fetch, f"campus.sid={value}")


@pytest.mark.gen_test
async def test_cookie_signed_before_the_absolute_timeout_is_anonymous(
    fetch: Fetch, services: Services, config: Any
) -> None:
    cookie = await logged_in(fetch)
    lifetime = config.session.absolute_timeout
    past = CookieSigner(config.session.secret, clock=lambda: time.time() - lifetime - 60)
    old = past.sign("campus.sid", decoded_id(cookie))
    await assert_anonymous(fetch, f"campus.sid={old}")
    # the id itself is live: only the cookie's age refuses it
    assert json_of(await me(fetch, cookie))["user"]["email"] == ANN


@pytest.mark.gen_test
async def test_idle_session_is_anonymous(fetch: Fetch, clock: Any, config: Any) -> None:
    cookie = await logged_in(fetch)
    clock.advance(config.session.idle_timeout + 1)
    await assert_anonymous(fetch, f"campus.sid={cookie}")


@pytest.mark.gen_test
async def test_huge_and_odd_cookies_are_anonymous(fetch: Fetch, services: Services) -> None:
    valid_shape = services.sessions.signer.sign("campus.sid", new_session_id())
    for header in [
        "campus.sid=" + "A" * 8000,
        "campus.sid=" + valid_shape + "A" * 8000,
        "campus.sid=" + valid_shape * 60,
        "campus.sid=%00%ff%0d%0a",
        'campus.sid="\\"\\\\"',
        "campus.sid=\u00e9\u00ff\u00a0",
        "campus.sid=a=b=c; campus.sid=; campus.sid",
        "campus.sid",
        "=campus.sid",
        ";;;;",
        "campus.sid=" + "|" * 200,
        "; ".join(f"c{i}=v{i}" for i in range(300)) + "; campus.sid=junk",
        "; ".join(["campus.sid=junk"] * 50),
        "other=" + "z" * 7000 + "; campus.sid=" + "y" * 500,
    ]:
        await assert_anonymous(fetch, header)


@pytest.mark.gen_test
async def test_many_cookie_headers_are_anonymous(fetch: Fetch) -> None:
    from tornado.httputil import HTTPHeaders

    headers = HTTPHeaders()
    for i in range(40):
        headers.add("Cookie", f"campus.sid=junk{i}; k{i}=v")
    response = await fetch("/api/me", headers=headers)
    assert error_of(response, 401) == "Not logged in"
    assert set_cookie_headers(response) == []


@pytest.mark.gen_test
async def test_other_cookies_do_not_disturb_a_valid_session(fetch: Fetch) -> None:
    cookie = await logged_in(fetch)
    header = "a=1; connect.sid=s%3Ajunk.sig; campus.sid=" + cookie + '; b="2"; c'
    response = await fetch("/api/me", headers={"Cookie": header})
    assert json_of(response)["user"]["email"] == ANN


# --- routes: unknown paths and wrong methods -------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/"),
        ("GET", "/api/nope"),
        ("POST", "/api/nope"),
        ("DELETE", "/api/nope"),
        ("PUT", "/api/users/1"),
        ("PATCH", "/api/me/x"),
        ("GET", "/api/me/x"),
        ("GET", "/api/me/"),
        ("GET", "/api/login"),
        ("HEAD", "/api/nope.js"),
        ("GET", "/api/%2e%2e/login"),
    ],
)
@pytest.mark.gen_test
async def test_unknown_api_paths_are_json_404(fetch: Fetch, method: str, path: str) -> None:
    body = b"{}" if method in ("POST", "PUT", "PATCH") else None
    response = await fetch(path, method=method, body=body)
    if method == "HEAD":
        assert response.code == 404
        assert response.headers.get("Content-Type", "").startswith("application/json")
        assert response.body == b""
    else:
        error_of(response, 404)
    assert response.headers.get("Cache-Control") == "no-store"
    assert set_cookie_headers(response) == []


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/login"),
        ("DELETE", "/login"),
        ("DELETE", "/logout"),
        ("PUT", "/logout"),
        ("POST", "/api/me"),
        ("DELETE", "/api/me"),
        ("PUT", "/"),
        ("POST", "/"),
        ("POST", "/some/route"),
        ("DELETE", "/index.html"),
        ("PATCH", "/account"),
    ],
)
@pytest.mark.gen_test
async def test_wrong_methods_are_json_405(fetch: Fetch, method: str, path: str) -> None:
    body = b"{}" if method in ("POST", "PUT", "PATCH") else None
    response = await fetch(path, method=method, body=body)
    error_of(response, 405)
    assert set_cookie_headers(response) == []


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PUT", "/api/me", "GET, HEAD"),
        ("PUT", "/login", "GET, HEAD, POST"),
        ("HEAD", "/logout", "GET, POST"),  # a probe never signs anyone out
        ("DELETE", "/healthz", "GET, HEAD"),
        ("POST", "/index.html", "GET, HEAD"),
        ("PATCH", "/api/sessions", "GET, HEAD"),
        ("GET", "/api/sessions/end-others", "POST"),
    ],
)
@pytest.mark.gen_test
async def test_a_405_says_which_methods_are_allowed(
    fetch: Fetch, method: str, path: str, allow: str
) -> None:
    body = b"{}" if method in ("POST", "PUT", "PATCH") else None
    response = await fetch(path, method=method, body=body)
    assert response.code == 405
    assert response.headers["Allow"] == allow


@pytest.mark.parametrize(("path", "status"), [("/healthz", 200), ("/api/me", 401)])
@pytest.mark.gen_test
async def test_head_is_answered_where_get_is(fetch: Fetch, path: str, status: int) -> None:
    response = await fetch(path, method="HEAD")
    assert response.code == status and response.body == b""
    assert int(response.headers["Content-Length"]) > 0  # what GET would send


@pytest.mark.gen_test
async def test_wrong_method_on_api_me_keeps_no_store(fetch: Fetch) -> None:
    response = await fetch("/api/me", method="POST", body=b"{}")
    error_of(response, 405)
    assert response.headers.get("Cache-Control") == "no-store"


@pytest.mark.parametrize("method", ["DELETE", "PUT"])
@pytest.mark.gen_test
async def test_wrong_method_on_logout_keeps_no_store(fetch: Fetch, method: str) -> None:
    response = await fetch("/logout", method=method, body=b"{}" if method == "PUT" else None)
    error_of(response, 405)
    assert response.headers.get("Cache-Control") == "no-store"


@pytest.mark.gen_test
async def test_logout_without_a_session(fetch: Fetch) -> None:
    for method in ("GET", "POST"):
        response = await fetch("/logout", method=method, body=b"" if method == "POST" else None)
        assert json_of(response) == {}
        assert response.headers.get("Cache-Control") == "no-store"
        assert response.headers.get("Clear-Site-Data") is None  # no cookie came: none to wipe
        assert set_cookie_headers(response) == []


@pytest.mark.gen_test
async def test_logout_with_a_garbage_cookie_is_fine(fetch: Fetch) -> None:
    response = await fetch("/logout", headers={"Cookie": "campus.sid=garbage"})
    assert json_of(response) == {}
    for header in set_cookie_headers(response):  # clearing it is fine, setting it is not
        assert session_cookie(response) == ""
        assert "1970" in header


# --- headers and the session cookie ----------------------------------------------------


@pytest.mark.gen_test
async def test_api_answers_are_never_cached(fetch: Fetch) -> None:
    responses = [
        await post_login(fetch, b"nope"),
        await post_login(fetch, login_body(ANN, "wrong")),
        await fetch("/api/me"),
        await fetch("/logout"),
        await fetch("/api/nothing"),
    ]
    cookie = await logged_in(fetch)
    responses.append(await me(fetch, cookie))
    responses.append(await post_login(fetch, login_body(), cookie=cookie))
    responses.append(await fetch("/logout", headers={"Cookie": f"campus.sid={cookie}"}))
    for response in responses:
        assert response.headers.get("Cache-Control") == "no-store", response.effective_url
        assert "ETag" not in response.headers


@pytest.mark.gen_test
async def test_session_cookie_attributes(fetch: Fetch, services: Services) -> None:
    response = await post_login(fetch, login_body())
    headers = set_cookie_headers(response)
    assert len(headers) == 1, headers
    attributes = cookie_attributes(headers[0])
    assert "httponly" in attributes
    assert attributes["path"] == "/"
    assert attributes["samesite"] == "Lax"
    assert attributes["max-age"] == "1800"
    assert "secure" not in attributes  # plain http and secure = "auto"
    assert "domain" not in attributes
    value = session_cookie(response)
    assert value
    assert value.startswith("2|")
    sid = decoded_id(value)
    assert SESSION_ID.fullmatch(sid), sid
    assert len(base64.urlsafe_b64decode(sid + "=" * (-len(sid) % 4))) >= 32
    verified = services.sessions.signer.verify("campus.sid", value, max_age=3600)
    assert verified is not None
    assert verified[0] == sid
    # nothing of the session's data rides in the cookie
    for leak in ("ann", "Ann", "student", "user", "{"):
        assert leak not in sid
        assert leak not in value
    assert len(value) < 300


@pytest.mark.gen_test
async def test_untrusted_forwarded_proto_does_not_make_the_cookie_secure(fetch: Fetch) -> None:
    response = await fetch(
        "/login",
        method="POST",
        body=login_body(),
        headers={"X-Forwarded-Proto": "https", "Content-Type": "application/json"},
    )
    assert response.code == 200
    (header,) = set_cookie_headers(response)
    assert "secure" not in cookie_attributes(header)


@pytest.mark.gen_test
async def test_logout_expires_the_cookie_with_the_same_attributes(
    fetch: Fetch, services: Services
) -> None:
    login = await post_login(fetch, login_body())
    (set_header,) = set_cookie_headers(login)
    cookie = session_cookie(login)
    assert cookie
    sid = decoded_id(cookie)

    response = await fetch("/logout", headers={"Cookie": f"campus.sid={cookie}"})
    assert json_of(response) == {}
    assert response.headers.get("Cache-Control") == "no-store"
    assert response.headers.get("Clear-Site-Data") == '"cache", "storage"'
    (clear_header,) = set_cookie_headers(response)
    assert session_cookie(response) == ""
    set_attributes = cookie_attributes(set_header)
    clear_attributes = cookie_attributes(clear_header)
    for name in ("path", "samesite", "httponly", "domain", "secure"):
        assert clear_attributes.get(name) == set_attributes.get(name), name
    # expired: an Expires in the past, or Max-Age=0
    expires = clear_attributes.get("expires", "")
    assert clear_attributes.get("max-age") == "0" or "1970" in expires, clear_header

    assert await services.sessions.store.load(sid, touch=None) is None
    assert error_of(await me(fetch, cookie), 401) == "Not logged in"
    # a second logout with the dead cookie is still 200 {}
    again = await fetch(
        "/logout", method="POST", body=b"", headers={"Cookie": f"campus.sid={cookie}"}
    )
    assert json_of(again) == {}


# --- a store that is down --------------------------------------------------------------


class TestStoreDown:
    """The API with a store that fails every call (an outage)."""

    @pytest.fixture
    def app(self, services: Services, config: Any, clock: Any) -> tornado.web.Application:
        from campus.web.services import build_sessions

        sessions = build_sessions(config, DownStore(), clock=clock)
        broken = Services(config=config, sessions=sessions, users=services.users)
        return make_app(broken, root=str(REPO))

    @pytest.mark.gen_test
    async def test_login_is_503(self, fetch: Fetch) -> None:
        response = await post_login(fetch, login_body())
        assert error_of(response, 503) == "Session store unavailable"
        assert response.headers.get("Retry-After")
        assert set_cookie_headers(response) == []

    @pytest.mark.gen_test
    async def test_me_with_a_cookie_is_503(self, fetch: Fetch, services: Services) -> None:
        cookie = services.sessions.signer.sign("campus.sid", new_session_id())
        response = await me(fetch, cookie)
        assert error_of(response, 503) == "Session store unavailable"
        assert response.headers.get("Retry-After")
        assert response.headers.get("Cache-Control") == "no-store"
        assert set_cookie_headers(response) == []

    @pytest.mark.gen_test
    async def test_logout_is_500(self, fetch: Fetch, services: Services) -> None:
        cookie = services.sessions.signer.sign("campus.sid", new_session_id())
        response = await fetch("/logout", headers={"Cookie": f"campus.sid={cookie}"})
        assert error_of(response, 500) == "Could not log out."
        assert response.headers.get("Cache-Control") == "no-store"


class FailingDeleteStore(MemoryStore):
    """Loads fine, then fails when logout deletes the record."""

    failing = False

    async def delete(self, sid: str) -> None:
        if self.failing:
            raise StoreUnavailable("down")
        await super().delete(sid)


class TestLogoutDeleteFails:
    @pytest.fixture
    def store(self, clock: Any) -> FailingDeleteStore:
        return FailingDeleteStore(max_sessions=100, clock=clock)

    @pytest.fixture
    def app(
        self, services: Services, config: Any, clock: Any, store: FailingDeleteStore
    ) -> tornado.web.Application:
        from campus.web.services import build_sessions

        sessions = build_sessions(config, store, clock=clock)
        flaky = Services(config=config, sessions=sessions, users=services.users)
        return make_app(flaky, root=str(REPO))

    @pytest.mark.gen_test
    async def test_logout_is_500_and_keeps_the_cookie(
        self, fetch: Fetch, store: FailingDeleteStore
    ) -> None:
        cookie = await logged_in(fetch)
        store.failing = True
        response = await fetch("/logout", headers={"Cookie": f"campus.sid={cookie}"})
        assert error_of(response, 500) == "Could not log out."
        assert response.headers.get("Cache-Control") == "no-store"
        assert set_cookie_headers(response) == []
        store.failing = False
        assert json_of(await me(fetch, cookie))["user"]["email"] == ANN

"""Device cookies through POST /login, on both stores: a browser that signed in as an email
before is counted on its own and never locked out by others' failures, for that email only;
forged, altered, expired or another email's cookies are no cookie; logout keeps it.

trust_proxy is on so that each request can name its client address (X-Forwarded-For).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json

import pytest
from tornado.httpclient import HTTPResponse

from campus.config import Config, LoginConfig
from campus.session.contract import ContractClock
from campus.web.devices import LIFETIME, MAX_VALUES, SUFFIX
from tests.support.apps import PASSWORD, Fetch, session_cookie

pytestmark = pytest.mark.gen_test

ANN, BOB = "ann@campus.test", "bob@campus.test"
LIMIT = 3
DEVICE = "campus.sid" + SUFFIX


@pytest.fixture(autouse=True)
def both_stores(store_kind: str) -> None:
    """Every test here runs on the memory store and on Redis."""


@pytest.fixture
def config(config: Config) -> Config:
    return dataclasses.replace(
        config,
        server=dataclasses.replace(config.server, trust_proxy=True),
        login=LoginConfig(max_failures=LIMIT, window=900),
    )


async def login(
    fetch: Fetch,
    email: str = ANN,
    password: str = PASSWORD,
    address: str = "10.0.0.1",
    device: str | None = None,
) -> HTTPResponse:
    headers = {"Content-Type": "application/json", "X-Forwarded-For": address}
    if device is not None:
        headers["Cookie"] = f"{DEVICE}={device}"
    body = json.dumps({"email": email, "password": password})
    return await fetch("/login", method="POST", body=body, headers=headers)


def device_cookie(response: HTTPResponse) -> tuple[str, str]:
    """The device cookie a response sets: its value and its attributes (lower case)."""
    for header in response.headers.get_list("Set-Cookie"):
        if header.startswith(DEVICE + "="):
            value, _, attributes = header.partition(";")
            return value.split("=", 1)[1].strip('"'), attributes.lower()
    raise AssertionError(response.headers.get_list("Set-Cookie"))


async def trusted(fetch: Fetch, email: str = ANN) -> str:
    """Sign in as *email* from a browser of its own: its device cookie."""
    response = await login(fetch, email, address="10.7.7.7")
    assert response.code == 200, response.body
    return device_cookie(response)[0]


async def lock(fetch: Fetch, email: str = ANN) -> None:
    """An attacker fails as *email* from several addresses until the email is throttled."""
    for i in range(LIMIT):
        assert (await login(fetch, email, "wrong", f"192.0.2.{i + 1}")).code == 403
    assert (await login(fetch, email, PASSWORD, "192.0.2.99")).code == 429


async def test_a_login_sets_a_long_lived_strict_http_only_device_cookie(fetch: Fetch) -> None:
    response = await login(fetch)
    value, attributes = device_cookie(response)
    assert value and "httponly" in attributes and "samesite=strict" in attributes
    assert f"max-age={LIFETIME}" in attributes and "path=/" in attributes
    assert "secure" not in attributes  # plain HTTP here: Secure follows the session cookie
    # The session's comes first: scripts that read one Set-Cookie get the session.
    assert response.headers.get_list("Set-Cookie")[0].startswith("campus.sid=")
    assert (await login(fetch, ANN, "wrong")).headers.get_list("Set-Cookie") == []


async def test_a_locked_email_still_signs_in_from_a_trusted_device(fetch: Fetch) -> None:
    device = await trusted(fetch)
    await lock(fetch)
    assert (await login(fetch, address="10.7.7.7")).code == 429  # without the cookie: locked
    for _ in range(LIMIT + 2):  # the attacker keeps failing; the owner keeps signing in
        assert (await login(fetch, ANN, "wrong", "192.0.2.50")).code == 429
        response = await login(fetch, address="10.7.7.7", device=device)
        assert response.code == 200, response.body
        assert session_cookie(response)


async def test_a_throttled_address_a_campus_nat_lets_trusted_devices_in(fetch: Fetch) -> None:
    device = await trusted(fetch)
    nat = "198.51.100.1"
    for i in range(LIMIT):
        assert (await login(fetch, f"guess{i}@campus.test", "x", nat)).code == 403
    assert (await login(fetch, BOB, PASSWORD, nat)).code == 429  # untrusted behind the NAT
    assert (await login(fetch, ANN, PASSWORD, nat, device)).code == 200


async def test_a_device_has_its_own_limit_and_it_holds(fetch: Fetch) -> None:
    device = await trusted(fetch)
    for _ in range(LIMIT):
        assert (await login(fetch, ANN, "wrong", device=device)).code == 403
    response = await login(fetch, ANN, PASSWORD, device=device)
    assert response.code == 429 and int(response.headers["Retry-After"]) > 0
    # The device's failures are its own: the email is not locked for other clients.
    assert (await login(fetch, ANN, PASSWORD, "10.8.8.8")).code == 200


async def test_guesses_sent_at_once_with_one_device_get_at_most_its_limit(fetch: Fetch) -> None:
    device = await trusted(fetch)
    answers = await asyncio.gather(*(login(fetch, ANN, "wrong", device=device) for _ in range(12)))
    codes = sorted(response.code for response in answers)
    assert set(codes) == {403, 429} and codes.count(403) <= LIMIT


async def test_another_email_s_device_cookie_is_no_cookie(fetch: Fetch) -> None:
    ann_device = await trusted(fetch, ANN)
    await lock(fetch, BOB)
    assert (await login(fetch, BOB, PASSWORD, "10.7.7.7", ann_device)).code == 429


async def test_forged_altered_and_expired_cookies_are_no_cookie(
    fetch: Fetch, clock: ContractClock
) -> None:
    device = await trusted(fetch)
    await lock(fetch)
    altered = device[:-3] + ("AAA" if not device.endswith("AAA") else "BBB")
    forged = device.replace(device.split("|")[4], "2:x" if "|" in device else "x")
    for cookie in (altered, forged, "2|1:0|10:1700000000|13:campus.device|4:YWJj|00", "junk"):
        assert (await login(fetch, ANN, PASSWORD, "10.7.7.7", cookie)).code == 429, cookie
    clock.advance(LIFETIME + 60)  # the device is forgotten, and so are the failures
    await lock(fetch)
    assert (await login(fetch, ANN, PASSWORD, "10.7.7.7", device)).code == 429


async def test_only_the_first_few_values_are_checked(fetch: Fetch) -> None:
    """A request stuffed with device cookies costs a few HMACs, not one per value."""
    device = await trusted(fetch)
    await lock(fetch)
    junk = "; ".join(f"{DEVICE}=junk{i}" for i in range(MAX_VALUES))
    for cookies, code in ((f"{junk}; {DEVICE}={device}", 429), (f"{DEVICE}={device}; {junk}", 200)):
        headers = {"Content-Type": "application/json", "X-Forwarded-For": "10.7.7.7"}
        body = json.dumps({"email": ANN, "password": PASSWORD})
        response = await fetch(
            "/login", method="POST", body=body, headers={**headers, "Cookie": cookies}
        )
        assert response.code == code


async def test_logout_keeps_the_device_cookie(fetch: Fetch) -> None:
    response = await login(fetch)
    device, session = device_cookie(response)[0], session_cookie(response)
    cookies = f"campus.sid={session}; {DEVICE}={device}"
    out = await fetch("/logout", method="POST", body="", headers={"Cookie": cookies})
    assert out.code == 200
    assert out.headers["Clear-Site-Data"] == '"cache", "storage"'
    assert not any(h.startswith(DEVICE) for h in out.headers.get_list("Set-Cookie"))
    await lock(fetch)
    assert (await login(fetch, ANN, PASSWORD, "10.7.7.7", device)).code == 200

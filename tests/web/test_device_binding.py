"""Device-bound sessions (DBSC) over HTTP with a client written from the draft
(tests/support/dbsc.py), on the memory store and on a real redis-server.

Keys are generated per test as a browser would (P-256 for ES256, RSA-2048 for RS256). Each
attack the draft guards against is a request here: a replayed challenge, a key missing or
added where it must not be, a confused algorithm or type, another key's signature, a
challenge of another session, and the copied session cookie on its own.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any
from urllib.parse import urlsplit

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from campus.session.contract import ContractClock
from campus.web.binding import policy
from campus.web.binding.cookie import GRACE, LIFETIME
from campus.web.services import Services
from tests.support.dbsc import b64url, compact, new_key, public_jwk
from tests.support.dbsc_app import (
    ANN,
    REFRESH,
    REGISTER,
    Make,
    bound,
    bound_cookie_set,
    counter,
    error,
    make,
    metered_services,
    signed_in,
    stored_data,
)

pytestmark = pytest.mark.gen_test
__all__ = ["make", "metered_services"]  # the shared fixtures, used by name


@pytest.fixture(autouse=True)
def both_stores(store_kind: str) -> None:
    """Every test here runs on the memory store and on Redis."""


# -- registration --------------------------------------------------------------------------


async def test_a_login_offers_registration_with_a_fresh_challenge_kept_only_hashed(
    make: Make, services: Services
) -> None:
    client = await signed_in(make)
    offered = client.offered
    assert offered is not None
    assert offered.algorithms == ["ES256", "RS256"]
    assert offered.path == REGISTER
    assert len(offered.challenge) >= 43
    data = await stored_data(services, client)
    assert data is not None
    assert offered.challenge not in json.dumps(data)
    digest = hashlib.sha256(offered.challenge.encode()).hexdigest()
    assert f"device_challenge:{digest}" in data

    again = await signed_in(make)
    assert again.offered is not None and again.offered.challenge != offered.challenge
    refused = await make().fetch("/login", "POST", {"email": ANN, "password": "wrong " * 3})
    assert refused.code == 403
    assert "Secure-Session-Registration" not in refused.headers


@pytest.mark.parametrize("alg", ["ES256", "RS256"])
async def test_a_browser_registers_and_its_requests_need_the_bound_cookie(
    make: Make, services: Services, alg: str, base_url: str
) -> None:
    host = urlsplit(base_url).hostname
    client = await signed_in(make, alg)
    response = await client.register()
    assert response.code == 200, response.body
    assert response.headers["Cache-Control"] == "no-store"
    body = json.loads(response.body)
    assert body["session_identifier"] == client.session_id
    assert body["refresh_url"] == REFRESH
    assert body["scope"] == {
        "include_site": False,
        "scope_specification": [
            {"type": "exclude", "domain": host, "path": "/"},
            {"type": "include", "domain": host, "path": "/api"},
            {"type": "exclude", "domain": host, "path": "/api/device-binding"},
        ],
    }
    assert body["credentials"] == [
        {
            "type": "cookie",
            "name": "campus.sid.bound",
            "attributes": "Path=/; HttpOnly; SameSite=Lax",
        }
    ]
    (set_cookie,) = [
        c for c in response.headers.get_list("Set-Cookie") if c.startswith("campus.sid.bound=")
    ]
    assert f"Max-Age={LIFETIME}" in set_cookie and "HttpOnly" in set_cookie
    assert "Path=/" in set_cookie and "SameSite=Lax" in set_cookie
    assert client.cached_challenge, "a challenge for the next refresh comes with the cookie"

    assert (await client.fetch("/api/me")).code == 200
    (listed,) = json.loads((await client.fetch("/api/sessions")).body)["sessions"]
    assert listed["bound"] is True
    data = await stored_data(services, client)
    assert data is not None and json.loads(data["device_binding"])["alg"] == alg
    assert counter(services, "campus_device_binding_registrations_total") == 1


async def test_the_proof_may_come_as_the_drafts_quoted_string_or_bare_as_chrome_sends_it(
    make: Make,
) -> None:
    quoted = await signed_in(make)
    assert (await quoted.register(quoted=True)).code == 200
    assert (await quoted.refresh()).code == 200


async def test_an_unbound_session_works_as_before_and_says_so(make: Make) -> None:
    client = await signed_in(make)  # a browser without DBSC: it never registers
    assert (await client.fetch("/api/me")).code == 200
    (listed,) = json.loads((await client.fetch("/api/sessions")).body)["sessions"]
    assert listed["bound"] is False


# -- what a thief gets -----------------------------------------------------------------------


async def test_a_copied_session_cookie_alone_gets_nothing(make: Make, services: Services) -> None:
    victim = await bound(make)
    (listed,) = json.loads((await victim.fetch("/api/sessions")).body)["sessions"]
    stolen = {"campus.sid": victim.cookies["campus.sid"]}
    thief = make()
    for method, path in (
        ("GET", "/api/me"),
        ("GET", "/api/sessions"),
        ("DELETE", f"/api/sessions/{listed['handle']}"),
        ("POST", "/api/sessions/end-others"),
    ):
        response = await thief.fetch(path, method, {} if method == "POST" else None, cookies=stolen)
        assert response.code == 401, (path, response.body)
        assert error(response) == policy.NOT_CONFIRMED
    # the refresh endpoint hands out a challenge, but only the device's key can answer it
    headers = {"Sec-Secure-Session-Id": victim.session_id or ""}
    answer = await thief.fetch(REFRESH, "POST", headers=headers, cookies=stolen)
    assert answer.code == 403
    challenge = answer.headers["Secure-Session-Challenge"].split('"')[1]
    forged = compact({"alg": "ES256", "typ": "dbsc+jwt"}, {"jti": challenge}, new_key("ES256"))
    headers["Secure-Session-Response"] = forged
    answer = await thief.fetch(REFRESH, "POST", headers=headers, cookies=stolen)
    assert answer.code == 400 and "signature" in error(answer)
    assert bound_cookie_set(answer) is None
    # nothing the thief did touched the victim
    assert (await victim.fetch("/api/me")).code == 200
    assert counter(services, "campus_device_binding_refused_total", cause="missing") == 4


async def test_a_bound_cookie_of_another_session_or_tampered_is_refused(make: Make) -> None:
    mine, other = await bound(make), await bound(make)
    value = mine.cookies["campus.sid.bound"]
    for wrong in (
        other.cookies["campus.sid.bound"],
        value[:-2] + ("AA" if value[-2:] != "AA" else "BB"),
    ):
        jar = {"campus.sid": mine.cookies["campus.sid"], "campus.sid.bound": wrong}
        response = await mine.fetch("/api/me", cookies=jar)
        # the browser is sent round again (it refreshes before following); the cookie expired
        assert response.code == 307, response.body
        assert response.headers["Location"] == "/api/me"
        assert bound_cookie_set(response) == ""


# -- refresh -----------------------------------------------------------------------------------


async def test_refresh_renews_the_cookie_in_one_request_with_the_challenge_given_before(
    make: Make, services: Services
) -> None:
    client = await bound(make)
    del client.cookies["campus.sid.bound"]  # expired, as far as the browser is concerned
    assert (await client.fetch("/api/me")).code == 401
    assert await client.refresh_until_done() == [200]
    assert "campus.sid.bound" in client.cookies
    assert (await client.fetch("/api/me")).code == 200
    # without a challenge in hand: 403 with one, then the signed retry (the draft's dance)
    client.cached_challenge = None
    assert await client.refresh_until_done() == [403, 200]
    assert counter(services, "campus_device_binding_refreshes_total") == 2


async def test_a_replayed_challenge_is_refused(make: Make, services: Services) -> None:
    client = await bound(make)
    assert client.cached_challenge is not None
    proof = client.proof(client.cached_challenge, registration=False)
    assert (await client.refresh(token=proof)).code == 200
    again = await client.refresh(token=proof)
    assert again.code == 403  # a used challenge: sign a new one
    assert bound_cookie_set(again) is None
    assert (
        counter(
            services,
            "campus_device_binding_failed_proofs_total",
            endpoint="refresh",
            reason="challenge",
        )
        == 1
    )

    # a registration proof is single-use too
    other = await signed_in(make)
    assert other.offered is not None
    token = other.proof(other.offered.challenge, registration=True)
    assert (await other.register(token)).code == 200
    replay = await other.register(token)
    assert replay.code == 400 and "challenge" in error(replay)


async def test_a_challenge_of_another_session_is_refused(make: Make) -> None:
    a, b = await bound(make), await bound(make)
    assert a.cached_challenge is not None
    proof = b.proof(a.cached_challenge, registration=False)  # b's key, a's challenge
    assert (await b.refresh(token=proof)).code == 403


async def test_a_stale_challenge_gets_a_new_one(make: Make, clock: ContractClock) -> None:
    client = await bound(make)
    clock.advance(policy.CHALLENGE_LIFETIME + 1)
    assert await client.refresh_until_done() == [403, 200]


async def test_an_expired_bound_cookie_sends_the_browser_to_refresh(
    make: Make, clock: ContractClock, services: Services
) -> None:
    client = await bound(make)
    clock.advance(LIFETIME + GRACE + 1)
    response = await client.fetch("/api/sessions")
    assert response.code == 307 and response.headers["Location"] == "/api/sessions"
    assert "campus.sid.bound" not in client.cookies  # expired by the answer
    assert await client.refresh_until_done() == [200]
    assert (await client.fetch("/api/sessions")).code == 200

    # a browser that could not refresh says so, and is refused rather than sent round
    clock.advance(LIFETIME + GRACE + 1)
    skipped = {"Secure-Session-Skipped": f'server_error;session_identifier="{client.session_id}"'}
    response = await client.fetch("/api/me", headers=skipped)
    assert response.code == 401 and error(response) == policy.NOT_CONFIRMED
    assert counter(services, "campus_device_binding_skipped_total", reason="server_error") == 1
    assert counter(services, "campus_device_binding_refused_total", cause="invalid") == 2


async def test_the_session_id_header_must_name_this_sessions_binding(make: Make) -> None:
    client = await bound(make)
    for claimed in ("s" + "0" * 32, '"other"', "", "(a b)"):
        response = await client.refresh(session_id=claimed)
        assert response.code == 400, claimed
    response = await client.fetch(REFRESH, "POST")  # no Sec-Secure-Session-Id at all
    assert response.code == 400


# -- proofs the draft does not allow -----------------------------------------------------------


async def test_registration_needs_the_key_in_the_header(make: Make) -> None:
    client = await signed_in(make)
    assert client.offered is not None
    token = client.proof(client.offered.challenge, registration=True, drop=("jwk",))
    response = await client.register(token)
    assert response.code == 400 and "jwk" in error(response)


async def test_refresh_must_not_carry_a_key(make: Make, services: Services) -> None:
    client = await bound(make)
    assert client.key is not None and client.cached_challenge is not None
    token = client.proof(
        client.cached_challenge, registration=False, header={"jwk": public_jwk(client.key)}
    )
    response = await client.refresh(token=token)
    assert response.code == 400 and "jwk" in error(response)
    assert (
        counter(
            services, "campus_device_binding_failed_proofs_total", endpoint="refresh", reason="key"
        )
        == 1
    )


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ({"typ": "JWT"}, "typ"),
        ({"typ": None}, "typ"),
        ({"alg": "RS256"}, "signature"),  # an EC key announced as RSA
        ({"alg": "ES384"}, "alg"),
        ({"alg": "PS256"}, "alg"),
        ({"alg": "none"}, "alg"),
    ],
)
async def test_registration_refuses_a_confused_type_or_algorithm(
    make: Make, header: dict[str, Any], reason: str
) -> None:
    client = await signed_in(make)
    assert client.offered is not None
    overrides = {k: v for k, v in header.items() if v is not None}
    drop = tuple(k for k, v in header.items() if v is None)
    token = client.proof(client.offered.challenge, registration=True, header=overrides, drop=drop)
    response = await client.register(token)
    assert response.code == 400, response.body
    assert reason in error(response) or "jwk" in error(response), error(response)


async def test_hmac_with_the_public_key_as_secret_is_refused(make: Make) -> None:
    """The classic confusion: sign HS256 with the public key the server holds."""
    client = await bound(make, "RS256")
    assert client.key is not None and client.cached_challenge is not None
    secret = json.dumps(public_jwk(client.key)).encode()
    token = compact({"alg": "HS256", "typ": "dbsc+jwt"}, {"jti": client.cached_challenge}, secret)
    response = await client.refresh(token=token)
    assert response.code == 400 and "alg" in error(response)
    # and the algorithm is the one registered: an RS256 session takes no ES256 proof
    other_key = new_key("ES256")
    token = compact(
        {"alg": "ES256", "typ": "dbsc+jwt"}, {"jti": client.cached_challenge}, other_key
    )
    response = await client.refresh(token=token)
    assert response.code == 400 and "RS256" in error(response)


async def test_a_signature_by_another_key_is_refused(make: Make) -> None:
    client = await signed_in(make)
    assert client.offered is not None
    client.key = new_key("ES256")
    token = client.proof(client.offered.challenge, registration=True, key=new_key("ES256"))
    response = await client.register(token)  # jwk of one key, signature of another
    assert response.code == 400 and "signature" in error(response)

    registered = await bound(make)
    assert registered.cached_challenge is not None
    token = registered.proof(registered.cached_challenge, registration=False, key=new_key("ES256"))
    response = await registered.refresh(token=token)
    assert response.code == 400 and "signature" in error(response)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "a.b.c",
        "x" * 9000,
        '"unterminated',
        "é.é.é",
        "eyJhbGciOiJFUzI1NiJ9",
        "W10.e30.AA",  # a header that is a JSON array
        "eyJhbGciOiJFUzI1NiIsInR5cCI6ImRic2Mrand0In0.W10.AA",  # claims that are an array
    ],
)
async def test_garbage_proofs_are_400_never_500(make: Make, value: str) -> None:
    client = await signed_in(make)
    response = await client.register(value)
    assert response.code == 400, response.body
    assert error(response).startswith("Proof refused")


async def test_keys_a_browser_would_never_send_are_refused(make: Make) -> None:
    client = await signed_in(make)
    assert client.offered is not None
    key = new_key("ES256")
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    private = b64url(key.private_numbers().private_value.to_bytes(32, "big"))
    short = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    for alg, jwk, signer in (
        ("ES256", {**public_jwk(key), "d": private}, key),  # the private part sent along
        ("ES256", {**public_jwk(key), "crv": "P-384"}, key),
        ("ES256", {"kty": "oct", "k": "c2VjcmV0"}, key),
        ("ES256", "a string", key),
        ("RS256", public_jwk(short), short),  # 1024 bits
    ):
        header = {"alg": alg, "typ": "dbsc+jwt", "jwk": jwk}
        token = compact(header, {"jti": client.offered.challenge}, signer)
        response = await client.register(token)
        assert response.code == 400, (jwk, response.body)
        assert "jwk" in error(response)

"""Device-bound sessions (DBSC) over HTTP with a client written from the draft
(tests/support/dbsc.py), on the memory store and on a real redis-server.

Keys are generated per test as a browser would (P-256 for ES256, RSA-2048 for RS256). Each
attack the draft guards against is a request here: a replayed challenge, a key missing or
added where it must not be, a confused algorithm or type, another key's signature, a
challenge of another session, and the copied session cookie on its own.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import hmac
import json
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from tornado.httpclient import AsyncHTTPClient, HTTPResponse
from tornado.ioloop import IOLoop

from campus.config import Config
from campus.observability.metrics import Metrics
from campus.session.contract import ContractClock
from campus.session.stores.redis import RedisStore
from campus.web.binding import policy
from campus.web.binding.cookie import GRACE, LIFETIME
from campus.web.express import ExpressSessions
from campus.web.services import Services
from tests.conftest import PASSWORD, DownStore, closing_store, make_config, make_services
from tests.support.dbsc import DbscClient, b64url, compact, new_key, public_jwk, registrations

pytestmark = pytest.mark.gen_test

ANN = "ann@campus.test"
REGISTER, REFRESH = policy.REGISTER_PATH, policy.REFRESH_PATH
Make = Callable[..., DbscClient]


@pytest.fixture(autouse=True)
def both_stores(store_kind: str) -> None:
    """Every test here runs on the memory store and on Redis."""


@pytest.fixture
def services(config: Config, clock: ContractClock, io_loop: IOLoop) -> Iterator[Services]:
    """The usual services, with metrics on: the tests read the binding counters."""
    built = dataclasses.replace(make_services(config, clock), metrics=Metrics())
    yield from closing_store(built, io_loop)


@pytest.fixture
def make(http_client: AsyncHTTPClient, base_url: str) -> Make:
    def client(alg: str = "ES256") -> DbscClient:
        return DbscClient(http_client, base_url, alg)

    return client


def counter(services: Services, name: str, **labels: str) -> float:
    assert services.metrics is not None
    value = services.metrics.registry.get_sample_value(name, labels)
    return value or 0.0


def bound_cookie_set(response: HTTPResponse) -> str | None:
    """The value a response gives the bound cookie ("" when it expires it), or None."""
    for line in response.headers.get_list("Set-Cookie"):
        name, _, rest = line.partition("=")
        if name == "campus.sid.bound":
            return rest.split(";", 1)[0].strip('"')
    return None


def error(response: HTTPResponse) -> str:
    message: str = json.loads(response.body)["errorMessage"]
    return message


async def signed_in(make: Make, alg: str = "ES256") -> DbscClient:
    client = make(alg)
    response = await client.login(ANN, PASSWORD)
    assert response.code == 200, response.body
    return client


async def bound(make: Make, alg: str = "ES256") -> DbscClient:
    client = await signed_in(make, alg)
    response = await client.register()
    assert response.code == 200, response.body
    return client


async def stored_data(services: Services, client: DbscClient) -> dict[str, str] | None:
    sessions = services.sessions
    verified = sessions.signer.verify("campus.sid", client.cookies["campus.sid"], max_age=1e9)
    assert verified is not None
    record = await sessions.store.load(verified[0], touch=None)
    return None if record is None else record.data


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


# -- modes, endings ----------------------------------------------------------------------------


@pytest.mark.session_config(device_binding="required")
async def test_required_ends_a_session_that_did_not_bind_in_time(
    make: Make, clock: ContractClock, services: Services
) -> None:
    lazy = await signed_in(make)  # a browser without DBSC
    assert (await lazy.fetch("/api/me")).code == 200  # within the registration window
    careful = await bound(make)
    clock.advance(policy.REGISTRATION_WINDOW + 1)
    before = dict(lazy.cookies)
    response = await lazy.fetch("/api/me")
    assert response.code == 401 and error(response) == policy.NOT_BOUND
    assert "campus.sid" not in lazy.cookies  # the session is over, its cookie expired
    lazy.cookies = before
    assert await stored_data(services, lazy) is None  # and its record is gone
    assert (await careful.fetch("/api/me")).code == 200
    late = await signed_in(make)
    clock.advance(policy.REGISTRATION_WINDOW + 1)
    assert (await late.register()).code == 400  # its challenge is stale by now
    assert counter(services, "campus_device_binding_refused_total", cause="unbound") == 1


@pytest.mark.session_config(device_binding="off")
async def test_off_offers_nothing_and_has_no_endpoints(make: Make) -> None:
    client = await signed_in(make)
    assert client.offered is None
    for path in (REGISTER, REFRESH):
        response = await client.fetch(path, "POST")
        assert response.code == 404 and error(response) == "Not found"
    assert (await client.fetch("/api/me")).code == 200


async def test_logout_ending_and_revocation_end_the_binding(make: Make, services: Services) -> None:
    client = await bound(make)
    kept = dict(client.cookies)
    assert (await client.fetch("/logout", "POST")).code == 200
    response = await client.fetch(
        REFRESH, "POST", headers={"Sec-Secure-Session-Id": client.session_id or ""}, cookies=kept
    )
    assert response.code == 401

    here, there = await bound(make), await bound(make)
    listed = json.loads((await here.fetch("/api/sessions")).body)["sessions"]
    (other,) = [s for s in listed if not s["current"]]
    assert other["bound"] is True
    assert (await here.fetch(f"/api/sessions/{other['handle']}", "DELETE")).code == 200
    assert (await there.refresh()).code == 401
    assert (await there.fetch("/api/me")).code == 401

    assert await services.sessions.store.delete_user(ANN) >= 1  # `sessions revoke`
    assert (await here.refresh()).code == 401


async def test_a_new_login_starts_unbound(make: Make, services: Services) -> None:
    client = await bound(make)
    assert (await client.login(ANN, PASSWORD)).code == 200  # same browser, signs in again
    data = await stored_data(services, client)
    assert data is not None and "device_binding" not in data
    assert (await client.fetch("/api/me")).code == 200  # the old bound cookie is not needed


# -- other stores, outages, concurrency -------------------------------------------------------


@pytest.mark.parametrize("topology", ["redis_cluster", "redis_sentinel"])
class TestTopologies:
    @pytest.fixture(autouse=True)
    def both_stores(self) -> None:
        """A Cluster and a Sentinel group instead."""

    @pytest.fixture
    def services(
        self, request: pytest.FixtureRequest, topology: str, users_file: Any, clock: ContractClock
    ) -> Iterator[Services]:
        group = request.getfixturevalue(topology)
        group.flush()
        config = make_config(users_file, "redis", group.url)
        yield dataclasses.replace(make_services(config, clock), metrics=Metrics())
        # closed on the test's loop by the test itself

    async def test_binding_lives_in_the_record_there_too(
        self, make: Make, services: Services
    ) -> None:
        try:
            client = await bound(make, "RS256")
            stolen = {"campus.sid": client.cookies["campus.sid"]}
            assert (await client.fetch("/api/me", cookies=stolen)).code == 401
            del client.cookies["campus.sid.bound"]
            assert await client.refresh_until_done() == [200]
            assert (await client.fetch("/api/me")).code == 200
            assert (await client.fetch("/logout", "POST")).code == 200
            client.cookies.update(stolen)
            assert (await client.refresh()).code == 401
        finally:
            await services.sessions.store.close()


async def test_a_store_outage_during_refresh_is_503_not_500(make: Make, services: Services) -> None:
    client = await bound(make)
    await services.sessions.store.close()
    store = services.sessions.store
    down = DownStore()
    services.sessions.store = down
    try:
        response = await client.refresh()
        assert response.code == 503 and "Retry-After" in response.headers
        assert error(response) == "Session store unavailable"
        assert (await client.register()).code == 503
    finally:
        services.sessions.store = store


async def test_concurrent_refreshes_each_get_a_cookie_and_none_undoes_another(
    make: Make, services: Services
) -> None:
    """Two tabs, or a proactive refresh racing a deferred one: each with its own challenge."""
    client = await bound(make)
    first = client.cached_challenge
    assert first is not None
    other = await client.refresh(token=client.proof(first, registration=False))
    assert other.code == 200  # a second challenge for the next refresh is now in hand
    second = client.cached_challenge
    assert second is not None
    third_answer = await client.fetch(
        REFRESH, "POST", headers={"Sec-Secure-Session-Id": client.session_id or ""}
    )
    third = third_answer.headers["Secure-Session-Challenge"].split('"')[1]
    proofs = [client.proof(c, registration=False) for c in (second, third)]
    answers = await asyncio.gather(*(client.refresh(token=p) for p in proofs))
    assert [a.code for a in answers] == [200, 200]
    data = await stored_data(services, client)
    assert data is not None
    for used in (first, second, third):  # none came back
        assert f"device_challenge:{hashlib.sha256(used.encode()).hexdigest()}" not in data


class TestExpressCarryOver:
    @pytest.fixture
    def store_kind(self) -> str:
        """The cut-over reads connect-redis records: Redis only."""
        return "redis"

    @pytest.mark.session_config(device_binding="required")
    async def test_a_carried_over_session_is_offered_binding(
        self, make: Make, services: Services, config: Config
    ) -> None:
        """Carrying an Express session over is a login by other means: it may bind, and under
        ``required`` it gets the same registration window as a login."""
        secret = "the Express app's secret"
        express = dataclasses.replace(config.express, secrets=(secret,))
        store = services.sessions.store
        assert isinstance(store, RedisStore)
        carrying = ExpressSessions(store.client, secrets=express.secrets, prefix=express.prefix)
        object.__setattr__(services, "express", carrying)
        sid = "express-session-id"
        record = {"cookie": {"expires": None}, "user": {"email": ANN, "name": "Ann"}}
        await store.client.set(express.prefix + sid, json.dumps(record))
        mac = hmac.new(secret.encode(), sid.encode(), hashlib.sha256).digest()
        client = make()
        client.cookies["connect.sid"] = quote(
            "s:" + sid + "." + base64.b64encode(mac).decode().rstrip("=")
        )
        response = await client.fetch("/api/me")
        assert response.code == 200, response.body
        offered = registrations(response.headers.get("Secure-Session-Registration"))
        assert len(offered) == 1
        client.offered = offered[0]
        assert (await client.register()).code == 200
        assert (await client.fetch("/api/me")).code == 200


async def test_a_proof_sent_many_times_at_once_is_taken_once(make: Make) -> None:
    """Requests racing with one proof all load the session before any writes it back: the
    store's atomic claim lets exactly one through."""
    client = await bound(make)
    assert client.cached_challenge is not None
    proof = client.proof(client.cached_challenge, registration=False)
    answers = await asyncio.gather(*(client.refresh(token=proof) for _ in range(12)))
    assert sorted(a.code for a in answers) == [200] + [403] * 11

    fresh = await signed_in(make)
    assert fresh.offered is not None
    token = fresh.proof(fresh.offered.challenge, registration=True)
    answers = await asyncio.gather(*(fresh.register(token) for _ in range(8)))
    assert sorted(a.code for a in answers) == [200] + [400] * 7

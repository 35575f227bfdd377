"""A DBSC client written from the draft (W3C webappsec-dbsc), the way a browser behaves.

It keeps cookies, reads ``Secure-Session-Registration`` and ``Secure-Session-Challenge``
answers, generates its key per session (P-256 for ES256, RSA-2048 for RS256, as Chrome's
software keys do) and signs proofs: compact JWS with ``typ: dbsc+jwt``, the public key in the
header at registration only, the challenge as ``jti``. Signing is done here with
``cryptography`` directly, not with the JOSE library the server verifies with, so a mistake
shared by both could not hide. ``proof()`` takes overrides for the attacks the tests make.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from http_sfv.item import InnerList, Item
from http_sfv.list import List
from tornado.httpclient import AsyncHTTPClient, HTTPResponse

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def new_key(alg: str) -> PrivateKey:
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_jwk(key: PrivateKey) -> dict[str, str]:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        numbers = key.public_key().public_numbers()
        return {
            "kty": "EC",
            "crv": "P-256",
            "x": b64url(numbers.x.to_bytes(32, "big")),
            "y": b64url(numbers.y.to_bytes(32, "big")),
        }
    rsa_numbers = key.public_key().public_numbers()
    return {
        "kty": "RSA",
        "n": b64url(rsa_numbers.n.to_bytes((rsa_numbers.n.bit_length() + 7) // 8, "big")),
        "e": b64url(rsa_numbers.e.to_bytes(3, "big")),
    }


def sign(key: PrivateKey | bytes, alg: str, message: bytes) -> bytes:
    """JWS signature bytes: ES256 as raw r||s, RS256 as PKCS#1 v1.5, HS256 with *key* bytes."""
    if isinstance(key, bytes):
        mac = hmac.HMAC(key, hashes.SHA256())
        mac.update(message)
        return mac.finalize()
    if isinstance(key, ec.EllipticCurvePrivateKey):
        r, s = decode_dss_signature(key.sign(message, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return key.sign(message, padding.PKCS1v15(), hashes.SHA256())


def compact(header: dict[str, Any], payload: dict[str, Any], key: PrivateKey | bytes) -> str:
    signing_input = ".".join(
        b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, payload)
    )
    alg = header.get("alg", "")
    signature = b"" if alg == "none" else sign(key, str(alg), signing_input.encode())
    return f"{signing_input}.{b64url(signature)}"


@dataclass
class Registration:
    """One entry of ``Secure-Session-Registration``."""

    algorithms: list[str]
    path: str
    challenge: str


def registrations(header: str | None) -> list[Registration]:
    if not header:
        return []
    parsed = List()
    parsed.parse(header.encode())
    found = []
    for entry in parsed:
        assert isinstance(entry, InnerList), header
        algorithms = [str(item.value) for item in entry]
        found.append(Registration(algorithms, entry.params["path"], entry.params["challenge"]))
    return found


def challenges(header: str | None) -> dict[str, str]:
    """``Secure-Session-Challenge``: session id -> challenge."""
    if not header:
        return {}
    item = Item()
    item.parse(header.encode())
    return {str(item.params["id"]): str(item.value)}


@dataclass
class DbscClient:
    """One browser profile: a cookie jar and, once registered, one device-bound session."""

    http: AsyncHTTPClient
    base_url: str
    alg: str = "ES256"
    cookies: dict[str, str] = field(default_factory=dict)
    key: PrivateKey | None = None
    offered: Registration | None = None
    session_id: str | None = None
    refresh_url: str | None = None
    bound_cookie: str | None = None
    cached_challenge: str | None = None
    instructions: dict[str, Any] | None = None

    async def fetch(
        self,
        path: str,
        method: str = "GET",
        body: Any = None,
        headers: dict[str, str] | None = None,
        *,
        cookies: dict[str, str] | None = None,
    ) -> HTTPResponse:
        jar = self.cookies if cookies is None else cookies
        sent = dict(headers or {})
        if jar:
            sent["Cookie"] = "; ".join(f"{name}={value}" for name, value in jar.items())
        if method == "POST" and body is None:
            body = ""
        response = await self.http.fetch(
            self.base_url + path,
            method=method,
            headers=sent,
            body=body if body is None or isinstance(body, str) else json.dumps(body),
            raise_error=False,
            follow_redirects=False,
            request_timeout=20,
        )
        if cookies is None:
            self._keep_cookies(response)
        self.cached_challenge = challenges(response.headers.get("Secure-Session-Challenge")).get(
            self.session_id or "", self.cached_challenge
        )
        return response

    def _keep_cookies(self, response: HTTPResponse) -> None:
        for line in response.headers.get_list("Set-Cookie"):
            pair, _, _ = line.partition(";")
            name, _, value = pair.partition("=")
            if not value.strip('"'):  # campus expires a cookie with an empty value
                self.cookies.pop(name.strip(), None)
            else:
                self.cookies[name.strip()] = value.strip('"')

    async def login(self, email: str, password: str) -> HTTPResponse:
        response = await self.fetch("/login", "POST", {"email": email, "password": password})
        offered = registrations(response.headers.get("Secure-Session-Registration"))
        self.offered = offered[0] if offered else None
        return response

    def proof(
        self,
        jti: str | None,
        *,
        registration: bool,
        key: PrivateKey | bytes | None = None,
        header: dict[str, Any] | None = None,
        drop: tuple[str, ...] = (),
    ) -> str:
        """A proof as the draft has it; *header* overrides or adds header members, *drop*
        removes them, *key* signs instead of the session key."""
        own = self.key if self.key is not None else new_key(self.alg)
        self.key = own
        head: dict[str, Any] = {"alg": self.alg, "typ": "dbsc+jwt"}
        if registration:
            head["jwk"] = public_jwk(own)
        head.update(header or {})
        for name in drop:
            head.pop(name, None)
        payload = {} if jti is None else {"jti": jti}
        return compact(head, payload, own if key is None else key)

    async def register(self, token: str | None = None, *, quoted: bool = False) -> HTTPResponse:
        """Answer the login's registration offer (with *token* instead, when given)."""
        assert self.offered is not None, "the login offered no registration"
        if token is None:
            self.key = new_key(self.alg)
            token = self.proof(self.offered.challenge, registration=True)
        value = f'"{token}"' if quoted else token
        response = await self.fetch(
            self.offered.path, "POST", headers={"Secure-Session-Response": value}
        )
        if response.code == 200:
            self._instructions(json.loads(response.body))
            self.cached_challenge = challenges(
                response.headers.get("Secure-Session-Challenge")
            ).get(self.session_id or "")
        return response

    def _instructions(self, body: dict[str, Any]) -> None:
        self.instructions = body
        self.session_id = body["session_identifier"]
        self.refresh_url = body["refresh_url"]
        self.bound_cookie = body["credentials"][0]["name"]

    async def refresh(
        self, *, token: str | None = None, session_id: str | None = None
    ) -> HTTPResponse:
        """One refresh request: with the cached challenge signed (or *token*), or without a
        proof when there is none; a browser repeats it after a 403."""
        assert self.refresh_url is not None and self.session_id is not None
        headers = {"Sec-Secure-Session-Id": self.session_id if session_id is None else session_id}
        if token is None and self.cached_challenge is not None:
            token = self.proof(self.cached_challenge, registration=False)
            self.cached_challenge = None
        if token is not None:
            headers["Secure-Session-Response"] = token
        return await self.fetch(self.refresh_url, "POST", headers=headers)

    async def refresh_until_done(self) -> list[int]:
        """Refresh as a browser does: retry after 403 with the challenge it carried."""
        statuses = []
        for _ in range(3):
            response = await self.refresh()
            statuses.append(response.code)
            if response.code != 403:
                break
        return statuses

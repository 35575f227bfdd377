"""DBSC proofs: the JWTs a browser signs with its session key, checked strictly.

A proof is a JWS whose header says ``typ: dbsc+jwt`` and an ``alg`` campus accepts, and
whose payload's ``jti`` is a challenge campus issued. At registration the header carries the
new public key (``jwk``) and the proof is verified with it; at refresh the header must carry
no key and the proof is verified with the one stored at registration, under the algorithm
registered with it. Every check is PyJWT's (with ``cryptography``); what is added here is the
DBSC profile on top: the type, the allowed algorithms, public keys only, key sizes, where the
key may appear. Anything wrong is a :class:`ProofError` naming the failed check, never
another exception.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jwt

#: The algorithms campus offers (and so accepts): the draft's two, "none" excluded.
ALGORITHMS = ("ES256", "RS256")
TYPE = "dbsc+jwt"
#: A proof is a few hundred bytes (an RSA-2048 key makes it about 1 KiB); more is not one.
MAX_PROOF_LENGTH = 8192
#: The public members of each key type: what is kept, and all that is kept.
_PUBLIC_MEMBERS = {"EC": ("kty", "crv", "x", "y"), "RSA": ("kty", "n", "e")}
#: Members that only a private key has: a browser never sends them.
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_OPTIONS: Any = {
    "verify_signature": True,
    "enforce_minimum_key_length": True,  # RSA keys under 2048 bits are refused
    # A proof carries jti (and perhaps authorization); nothing else is asked of it.
    "verify_exp": False,
    "verify_nbf": False,
    "verify_iat": False,
    "verify_aud": False,
    "verify_iss": False,
    "verify_sub": False,
    "verify_jti": True,
    "require": ["jti"],
}


class ProofError(Exception):
    """A proof campus refuses. ``reason`` is one word for metrics; str() says what failed."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Proof:
    """A verified proof: its algorithm, its public key (registration only) and its challenge."""

    alg: str
    jwk: dict[str, str] | None
    jti: str


def registration_proof(token: str) -> Proof:
    """Verify a registration proof with the key in its own header; return that key with it."""
    header = _header(token)
    alg = header["alg"]
    raw_key = header.get("jwk")
    if raw_key is None:
        raise ProofError("key", "A registration proof must carry its public key (jwk)")
    key, public = _public_key(raw_key, alg)
    return Proof(alg, public, _verified_jti(token, key, alg))


def refresh_proof(token: str, *, alg: str, jwk: dict[str, str]) -> Proof:
    """Verify a refresh proof with the key registered for the session, under its algorithm."""
    header = _header(token)
    if "jwk" in header:
        raise ProofError("key", "A refresh proof must not carry a key (jwk)")
    if header["alg"] != alg:
        raise ProofError("algorithm", f"The session's key signs {alg}, not {header['alg']}")
    key, _ = _public_key(jwk, alg)
    return Proof(alg, None, _verified_jti(token, key, alg))


def _header(token: str) -> dict[str, Any]:
    if len(token) > MAX_PROOF_LENGTH:
        raise ProofError("malformed", "The proof is too long")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise ProofError("malformed", "The proof is not a compact JWS") from None
    if header.get("typ") != TYPE:
        raise ProofError("type", f"The proof's typ must be {TYPE}")
    if header.get("alg") not in ALGORITHMS:
        raise ProofError("algorithm", f"The proof's alg must be one of {', '.join(ALGORITHMS)}")
    return header


def _public_key(raw: Any, alg: str) -> tuple[jwt.PyJWK, dict[str, str]]:
    """The key for *alg* from a JWK, and its public members; ProofError for anything else."""
    if not isinstance(raw, dict):
        raise ProofError("key", "The jwk is not a JSON Web Key")
    if _PRIVATE_MEMBERS & raw.keys():
        raise ProofError("key", "The jwk holds private key material")
    kty = raw.get("kty")
    members = _PUBLIC_MEMBERS.get(kty, ()) if isinstance(kty, str) else ()
    public = {name: raw.get(name) for name in members}
    if not members or not all(isinstance(value, str) for value in public.values()):
        raise ProofError("key", f"The jwk is not a public key for {alg}")
    try:
        key = jwt.PyJWK(public, algorithm=alg)
    except (jwt.PyJWTError, ValueError, TypeError):
        raise ProofError("key", f"The jwk is not a public key for {alg}") from None
    if key.Algorithm.check_key_length(key.key):
        raise ProofError("key", "The jwk is too short for its algorithm")
    return key, {name: str(value) for name, value in public.items()}


def _verified_jti(token: str, key: jwt.PyJWK, alg: str) -> str:
    try:
        claims = jwt.decode(token, key, algorithms=[alg], options=_OPTIONS)
    except jwt.InvalidSignatureError:
        raise ProofError("signature", "The proof's signature does not verify") from None
    except jwt.InvalidKeyError:
        raise ProofError("key", f"The key cannot verify {alg}") from None
    except jwt.PyJWTError:
        raise ProofError("malformed", "The proof's claims are not a JSON object with jti") from None
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti:
        raise ProofError("challenge", "The proof names no challenge (jti)")
    return jti

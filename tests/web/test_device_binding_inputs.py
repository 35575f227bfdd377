"""Whatever a client puts in the DBSC headers, the parsers answer with a value or a refusal:
never another exception (which would be a 500). Property-based, with hypothesis."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from campus.web.binding import fields
from campus.web.binding.proof import ProofError, refresh_proof, registration_proof
from tests.support.dbsc import compact, new_key, public_jwk

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=12,
)
KEY = new_key("ES256")
JWK = public_jwk(KEY)


def segment(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def refused_or_verified(token: str) -> None:
    for check in (
        registration_proof,
        lambda t: refresh_proof(t, alg="ES256", jwk=JWK),
    ):
        try:
            check(token)
        except ProofError as error:
            assert error.reason in {
                "malformed",
                "type",
                "algorithm",
                "key",
                "signature",
                "challenge",
            }


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=300))
def test_any_text_is_a_refused_proof(text: str) -> None:
    refused_or_verified(text)


@settings(max_examples=150, deadline=None)
@given(JSON, JSON, st.binary(max_size=80))
def test_any_json_header_and_claims_are_refused_or_verified(
    header: Any, claims: Any, signature: bytes
) -> None:
    refused_or_verified(
        f"{segment(header)}.{segment(claims)}.{base64.urlsafe_b64encode(signature).decode()}"
    )


@settings(max_examples=100, deadline=None)
@given(
    st.dictionaries(st.sampled_from(["alg", "typ", "jwk", "crit", "b64", "kid"]), JSON, max_size=6)
)
def test_any_profile_header_signed_by_a_real_key_is_refused_or_verified(header: Any) -> None:
    refused_or_verified(compact({"alg": "ES256", **header}, {"jti": "c"}, KEY))


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=200))
def test_header_fields_never_raise(text: str) -> None:
    value = fields.text(text)
    assert value is None or isinstance(value, str)
    assert all(reason in {*fields.SKIPPED_REASONS, "other"} for reason in fields.skipped(text))


def test_a_good_proof_is_verified() -> None:
    """The properties above are not vacuous: a proof made right passes both checks."""
    registration = compact({"alg": "ES256", "typ": "dbsc+jwt", "jwk": JWK}, {"jti": "c1"}, KEY)
    assert registration_proof(registration).jwk == JWK
    refresh = compact({"alg": "ES256", "typ": "dbsc+jwt"}, {"jti": "c2"}, KEY)
    assert refresh_proof(refresh, alg="ES256", jwk=JWK).jti == "c2"
    with pytest.raises(ProofError, match="must not carry a key"):
        refresh_proof(registration, alg="ES256", jwk=JWK)

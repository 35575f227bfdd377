"""The record format every store shares: what decodes, what counts as no session."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from campus.session.store import SessionRecord, decode_record, encode_record, encode_values

#: What a handler may put in a session: anything JSON holds (finite numbers).
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@pytest.mark.slow
@given(st.dictionaries(st.text(), json_values, max_size=4), st.none() | st.text())
def test_any_json_value_round_trips_through_a_record(
    data: dict[str, Any], user: str | None
) -> None:
    """The fast parser must not narrow what a session holds: lone surrogates and integers
    past 64 bits (which orjson refuses) come back as json would give them."""
    record = SessionRecord(encode_values(data), 2_000_000_000, user)
    raw = encode_record(record).encode()
    decoded = decode_record(raw)
    assert decoded is not None and decoded.user == user
    assert decoded.decoded() == json.loads(json.dumps(data))


def test_values_the_fast_parser_refuses_still_load() -> None:
    data = {"big": 2**70, "lone": "\ud800", "nested": [{"x": -(2**80)}]}
    record = decode_record(encode_record(SessionRecord(encode_values(data), 1, "\udfff")))
    assert record is not None and record.user == "\udfff"
    assert record.decoded() == data


@pytest.mark.parametrize("number", [-(2**63) - 1, 2**64, -(2**80), 10**30])
def test_integers_past_64_bits_stay_exact(number: int) -> None:
    """orjson reads these as floats without an error: the record must still give them back."""
    record = decode_record(encode_record(SessionRecord(encode_values({"n": number}), 1, None)))
    assert record is not None
    value = record.decoded()["n"]
    assert type(value) is int and value == number

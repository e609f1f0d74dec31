"""Integer ranges and integral floats on both request paths (typed and generic map)."""

from __future__ import annotations

from typing import Any

import pytest

from modelbus.events import build_codec, load_contract, new_meta
from modelbus.events.meta import now_utc
from modelbus_inference.validation import ContractFields, Rejected, RequestDecoder

ROW: dict[str, Any] = {
    "salary": 50_000.0, "commission": 10_000.0, "age": 40, "elevel": 2, "car": 3,
    "zipcode": 4, "hvalue": 100_000.0, "hyears": 10, "loan": 20_000.0,
}  # fmt: skip
TYPED = "modelbus.models.credit.PredictionRequest"
GENERIC = "modelbus.events.PredictionRequest"


@pytest.fixture(scope="module")
def codec():  # type: ignore[no-untyped-def]
    return build_codec(models=("credit",))


@pytest.fixture(scope="module")
def decoder(codec) -> RequestDecoder:  # type: ignore[no-untyped-def]
    return RequestDecoder(
        codec, codec.store.reader(TYPED), load_contract("credit"), model="credit",
        max_request_bytes=4096,
    )  # fmt: skip


def _encoded(codec, schema: str, features: dict[str, Any]) -> bytes:  # type: ignore[no-untyped-def]
    record = {
        "meta": new_meta("producer").to_avro(),
        "request_id": "r1",
        "model": "credit",
        "sent_at": now_utc(),
        "features": features,
    }
    return codec.encode_record(record, codec.store.reader(schema))  # type: ignore[no-any-return]


def test_an_int_beyond_32_bits_in_a_typed_request_is_refused_naming_the_field(
    codec, decoder: RequestDecoder
) -> None:
    # fastavro writes an int field as a zigzag varint without a range check, as a careless or
    # hostile writer would: the bytes are a valid long but not a valid int.
    value = _encoded(codec, TYPED, {**ROW, "age": 2**40})
    with pytest.raises(Rejected, match=r"field 'age' is 1099511627776, outside an Avro int"):
        decoder.decode(value)


def test_an_int_beyond_32_bits_in_the_generic_map_is_refused(codec, decoder) -> None:
    value = _encoded(codec, GENERIC, {**ROW, "car": -(2**31) - 1})
    with pytest.raises(Rejected, match=r"field 'car' is -2147483649, outside an Avro int"):
        decoder.decode(value)


def test_the_edges_of_the_int_range_are_accepted(codec, decoder) -> None:
    low = decoder.decode(_encoded(codec, TYPED, {**ROW, "age": -(2**31)}))
    high = decoder.decode(_encoded(codec, GENERIC, {**ROW, "age": 2**31 - 1}))
    assert (low["features"]["age"], high["features"]["age"]) == (-(2**31), 2**31 - 1)


def test_an_integral_double_for_an_int_field_in_the_generic_map_is_that_int(codec, decoder) -> None:
    decoded = decoder.decode(_encoded(codec, GENERIC, {**ROW, "age": 42.0}))
    assert decoded["features"]["age"] == 42
    assert type(decoded["features"]["age"]) is int


@pytest.mark.parametrize("value", [42.5, float("inf"), float("nan")])
def test_a_fractional_or_non_finite_double_for_an_int_field_is_refused(value: float) -> None:
    fields = ContractFields(load_contract("credit"))
    with pytest.raises(Rejected, match=r"field 'age' is float .*; the contract says int"):
        fields.coerce({**ROW, "age": value})

"""The wire format: single-object Avro round trips, schema evolution, and typed failures."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelbus.events import (
    BadMagic,
    BodyMismatch,
    EncodeError,
    GenericRecord,
    SchemaStore,
    TruncatedMessage,
    UnknownSchema,
    build_codec,
    event_schemas,
    example_event,
    find_schema_dir,
    new_meta,
)
from modelbus.events import types as t
from modelbus.events.meta import now_utc
from modelbus.events.types import ALL_RECORDS
from tests.support.strategies import from_schema

CODEC = build_codec(models=("credit",))
SCHEMAS = event_schemas()


@pytest.mark.parametrize("cls", ALL_RECORDS, ids=lambda cls: cls.__name__)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_schema_round_trips(cls: type, data: st.DataObject) -> None:
    record = data.draw(from_schema(SCHEMAS[cls.SCHEMA_NAME]))
    event = cls.from_avro(record)
    encoded = CODEC.encode(event)
    assert encoded[:2] == b"\xc3\x01"
    assert encoded[2:10] == CODEC.store.reader(cls.SCHEMA_NAME).fingerprint
    assert CODEC.decode(encoded) == event


def test_fingerprint_is_the_little_endian_crc64_avro_of_the_canonical_form() -> None:
    from modelbus.events.schemas import fingerprint_of

    # Avro spec test vector: CRC-64-AVRO("null") = 0x63dd24e7cc258f8a, written little-endian.
    assert fingerprint_of("null").hex() == "8a8f25cce724dd63"  # type: ignore[arg-type]


def test_credit_request_round_trips_with_its_typed_feature_record() -> None:
    request = t.PredictionRequest(
        meta=new_meta("test"),
        request_id="r-1",
        model="credit",
        sent_at=now_utc(),
        features={
            "salary": 50_000.0,
            "commission": 0.0,
            "age": 40,
            "elevel": 2,
            "car": 5,
            "zipcode": 3,
            "hvalue": 150_000.0,
            "hyears": 10,
            "loan": 20_000.0,
        },
    )
    encoded = CODEC.encode(request, schema_name="modelbus.models.credit.PredictionRequest")
    writer, record = CODEC.decode_record(encoded)
    assert writer.name == "modelbus.models.credit.PredictionRequest"
    assert CODEC.decode(encoded) == request
    assert record["features"]["age"] == 40


def test_event_written_with_an_older_schema_decodes_with_todays_reader() -> None:
    old_schema = json.loads(
        (find_schema_dir() / "history" / "modelbus.events.ModelRegistered.v1.avsc").read_text()
    )
    old_schema["fields"][0]["type"] = SCHEMAS["modelbus.events.EventMeta"]
    writer_store = SchemaStore()
    old = writer_store.add(old_schema)
    today = CODEC.store.reader("modelbus.events.ModelRegistered")
    assert old.fingerprint != today.fingerprint
    record = example_event(t.ModelRegistered).to_avro()  # type: ignore[attr-defined]
    del record["description"]
    encoded = build_codec(writer_store).encode_record(record, old)

    reader_store = SchemaStore(fetch_missing=lambda: [old_schema])
    decoded = build_codec(reader_store).decode(encoded)

    assert isinstance(decoded, t.ModelRegistered)
    assert decoded.description == ""  # the default today's schema gives the new field
    assert decoded.version == record["version"]


def test_a_schema_unknown_in_code_decodes_as_a_generic_record() -> None:
    future = {
        "type": "record",
        "name": "modelbus.events.FeatureStoreSynced",
        "doc": "An event type this process has no class for.",
        "fields": [{"name": "rows", "type": "long", "doc": "rows"}],
    }
    writer = SchemaStore()
    known = writer.add(future)
    encoded = build_codec(writer).encode_record({"rows": 7}, known)
    decoded = build_codec(SchemaStore(fetch_missing=lambda: [future])).decode(encoded)
    assert decoded == GenericRecord("modelbus.events.FeatureStoreSynced", {"rows": 7})


def _valid() -> bytes:
    return CODEC.encode(example_event(t.ModelRegistered))


@pytest.mark.parametrize(
    ("data", "error", "cause"),
    [
        (b"\xc3\x01\x00", TruncatedMessage, "shorter than the 10-byte"),
        (b"\x00\x01" + bytes(8) + b"x", BadMagic, "starts with 0001 instead of c301"),
        (b"\xc3\x01" + bytes(8) + b"x", UnknownSchema, "0000000000000000 was never published"),
        (_valid()[:-3], TruncatedMessage, "cut short"),
        (_valid() + b"\x00", BodyMismatch, "1 bytes left over"),
        (_valid()[:10] + b"\xff" * 20, BodyMismatch, "does not decode as"),
    ],
    ids=[
        "short-header",
        "bad-magic",
        "unknown-fingerprint",
        "truncated-body",
        "trailing",
        "garbage",
    ],
)
def test_bad_bytes_raise_a_typed_error_naming_where_and_why(
    data: bytes, error: type[Exception], cause: str
) -> None:
    with pytest.raises(error) as raised:
        CODEC.decode(data, where="modelbus.credit.requests[2]@117")
    message = str(raised.value)
    assert message.startswith("modelbus.credit.requests[2]@117: ")
    assert cause in message


def test_unknown_fingerprint_is_fetched_once_then_remembered_as_missing() -> None:
    fetches = []
    store = SchemaStore(fetch_missing=lambda: fetches.append(1) or [], refetch_after_s=60)
    codec = build_codec(store)
    for _ in range(3):
        with pytest.raises(UnknownSchema):
            codec.decode(b"\xc3\x01" + b"\x11" * 8 + b"x")
    assert len(fetches) == 1


def test_a_value_of_the_wrong_type_is_an_encode_error() -> None:
    event = example_event(t.ModelRegistered)
    bad = event.to_avro()  # type: ignore[attr-defined]
    bad["version"] = "three"
    with pytest.raises(EncodeError, match=r"value does not fit modelbus\.events\.ModelRegistered"):
        CODEC.encode(bad, schema_name="modelbus.events.ModelRegistered")


def test_contract_violation_in_a_request_is_an_encode_error() -> None:
    record = example_event(t.PredictionRequest).to_avro()  # type: ignore[attr-defined]
    record["features"] = {"salary": "lots"}
    with pytest.raises(EncodeError):
        CODEC.encode(record, schema_name="modelbus.models.credit.PredictionRequest")

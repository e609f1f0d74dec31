"""The compiled request reader agrees with fastavro and fails only with Rejected."""

from __future__ import annotations

import contextlib
import math
import random
import struct
from datetime import UTC, datetime
from io import BytesIO

import pytest
from fastavro import schemaless_reader

from modelbus.events import build_codec, load_contract, new_meta
from modelbus.events.codec import HEADER_BYTES
from modelbus_inference.avro_reader import Unsupported, compile_reader
from modelbus_inference.validation import Rejected, RequestDecoder

TYPED = "modelbus.models.credit.PredictionRequest"


def _request(request_id: str, **features: float) -> dict:
    row = {
        "salary": 1.5,
        "commission": -0.0,
        "age": -2_147_483_648,
        "elevel": 4,
        "car": 2_147_483_647,
        "zipcode": 0,
        "hvalue": 1e308,
        "hyears": 30,
        "loan": math.nan,
        **features,
    }
    return {
        "meta": new_meta("producer").to_avro(),
        "request_id": request_id,
        "model": "credit",
        "sent_at": datetime(2026, 11, 26, 8, 0, 0, 123000, tzinfo=UTC),
        "features": row,
    }


def _bitwise(value: object) -> object:
    """Floats by their IEEE-754 bits (a NaN equals only the very same NaN), the rest as is."""
    return (float, struct.pack("<d", value)) if isinstance(value, float) else (type(value), value)


@pytest.mark.parametrize("request_id", ["r1", "", "ünïcode-" + "x" * 300])
def test_compiled_reader_matches_fastavro(request_id: str) -> None:
    codec = build_codec(models=("credit",))
    known = codec.store.reader(TYPED)
    data = codec.encode_record(_request(request_id), known)
    compiled, end = compile_reader(known.schema)(data, HEADER_BYTES)
    reference = schemaless_reader(BytesIO(data[HEADER_BYTES:]), known.parsed, None)
    assert end == len(data)
    assert compiled["sent_at"] == 1795680000123
    assert compiled["meta"]["occurred_at"] == int(
        reference["meta"]["occurred_at"].timestamp() * 1000
    )
    for name in ("request_id", "model"):
        assert compiled[name] == reference[name]
    assert compiled["meta"]["event_id"] == reference["meta"]["event_id"]
    assert compiled["meta"]["causation_id"] == reference["meta"]["causation_id"]
    assert list(compiled["features"]) == list(reference["features"])
    for name, value in reference["features"].items():
        assert _bitwise(compiled["features"][name]) == _bitwise(value), name


def test_maps_are_left_to_fastavro() -> None:
    with pytest.raises(Unsupported):
        compile_reader({"type": "map", "values": "string"})


def test_corrupted_bodies_are_rejected_never_crash() -> None:
    codec = build_codec(models=("credit",))
    known = codec.store.reader(TYPED)
    contract = load_contract("credit")
    decoder = RequestDecoder(codec, known, contract, model="credit", max_request_bytes=4096)
    good = codec.encode_record(_request("r", loan=1.0), known)
    assert decoder.decode(good)["sent_at_s"] == pytest.approx(1795680000.123)
    chooser = random.Random(0)
    for _ in range(2000):
        data = bytearray(good)
        if chooser.random() < 0.5:
            data = data[: chooser.randrange(HEADER_BYTES, len(data))]
        else:
            for _ in range(chooser.randint(1, 4)):
                data[chooser.randrange(HEADER_BYTES, len(data))] = chooser.randrange(256)
        with contextlib.suppress(Rejected):
            decoder.decode(bytes(data))

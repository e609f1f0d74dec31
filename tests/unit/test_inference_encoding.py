"""The hand-rolled PredictionResult encoder writes exactly what fastavro writes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from modelbus.events import build_codec
from modelbus.events import types as t
from modelbus_inference.encoding import ResultEncoder, uuid4_strings, zigzag

RESULT = "modelbus.events.PredictionResult"


@pytest.mark.parametrize(
    ("scores", "causation_id", "version", "request_id"),
    [
        ([0.25, 0.75], "cause-1", 1, "r1"),
        ([], None, 300, "ü-request-" + "x" * 200),
        ([1e-300, -0.0, 1.0], "c", -5, ""),
    ],
)
def test_fast_bytes_equal_fastavro_bytes(scores, causation_id, version, request_id) -> None:  # type: ignore[no-untyped-def]
    codec = build_codec()
    known = codec.store.reader(RESULT)
    encoder = ResultEncoder(codec, known, producer="inference@host:1", model="credit")
    assert encoder.fast
    fields = {
        "event_id": "5f0c8a52-8a1c-4d0b-9b52-0d4a3a7c2f10",
        "occurred_at": datetime(2026, 11, 26, 8, 30, 1, 123000, tzinfo=UTC),
        "correlation_id": "corr",
        "causation_id": causation_id,
        "request_id": request_id,
        "version": version,
        "variant": "canary",
        "scores": scores,
        "label": 1,
        "timings": (1.5, 0.25, 2.75, 77),
    }
    fast = encoder.encode(**fields)
    encoder.fast = False
    assert fast == encoder.encode(**fields)
    decoded = codec.decode(fast)
    assert isinstance(decoded, t.PredictionResult)
    assert (decoded.request_id, decoded.version, decoded.scores) == (request_id, version, scores)
    assert decoded.meta.occurred_at == fields["occurred_at"]
    assert decoded.timings.batch_size == 77


def test_zigzag_matches_the_avro_spec() -> None:
    assert zigzag(0) == b"\x00"
    assert zigzag(-1) == b"\x01"
    assert zigzag(1) == b"\x02"
    assert zigzag(64) == b"\x80\x01"
    assert zigzag(-65) == b"\x81\x01"


def test_batched_event_ids_are_distinct_uuid4s() -> None:
    ids = uuid4_strings(1000)
    assert len(set(ids)) == 1000
    assert all(uuid.UUID(i).version == 4 and str(uuid.UUID(i)) == i for i in ids)
    assert all(uuid.UUID(i).variant == uuid.RFC_4122 for i in ids)

"""The hand-rolled PredictionResult and DeadLetter encoders write exactly what fastavro writes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from modelbus.bus import dead_letter
from modelbus.bus.envelope import Envelope
from modelbus.events import build_codec
from modelbus.events import types as t
from modelbus.events.codec import MAGIC
from modelbus_inference.encoding import DeadLetterEncoder, ResultEncoder, uuid4_strings, zigzag

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


@pytest.mark.parametrize(
    ("key", "value", "model_version", "reason"),
    [
        (b"k-1", b"\xc3\x01" + bytes(9), None, "requests[0]@7: unknown fingerprint 00ff"),
        (None, None, 3, "ü" * 300),
        (b"", b"x" * 5000, 0, ""),
    ],
)
def test_fast_dead_letters_equal_the_dead_letter_event_fastavro_writes(  # type: ignore[no-untyped-def]
    key, value, model_version, reason
) -> None:
    codec = build_codec()
    known = codec.store.reader("modelbus.events.DeadLetter")
    encoder = DeadLetterEncoder(codec, known, producer="inference@host:1", model="credit")
    assert encoder.fast
    envelope = Envelope(topic="modelbus.credit.requests", value=value, key=key, partition=2,
                        offset=2**35)  # fmt: skip
    event = dead_letter(envelope, "UnknownSchema", reason, producer="inference@host:1",
                        model_version=model_version)  # fmt: skip
    fast = encoder.encode(
        event_id=event.meta.event_id, occurred_at=event.meta.occurred_at, topic=envelope.topic,
        partition=2, offset=2**35, key=key, value=value, error_type="UnknownSchema",
        reason=event.reason, model_version=model_version,
    )  # fmt: skip
    assert fast == codec.encode(event)
    assert codec.decode(fast) == event


def test_a_dead_letter_schema_of_another_shape_is_encoded_by_fastavro() -> None:
    codec = build_codec()
    known = codec.store.reader("modelbus.events.DeadLetter")
    fields = [f for f in known.schema["fields"] if f["name"] != "model_version"]
    other = codec.store.add({**known.schema, "fields": fields}, reader=False)
    encoder = DeadLetterEncoder(codec, other, producer="p", model="credit")
    assert not encoder.fast
    written = encoder.encode(
        event_id="e", occurred_at=datetime(2026, 1, 1, tzinfo=UTC), topic="t", partition=0,
        offset=1, key=None, value=b"v", error_type="X", reason="r", model_version=None,
    )  # fmt: skip
    assert written.startswith(MAGIC + other.fingerprint)

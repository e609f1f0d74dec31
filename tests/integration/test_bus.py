"""The bus on a real broker: every event through it, dead letters, and the schema store."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from typing import Any

import pytest

from modelbus.bus import ConsumerLoop, Dispatcher, Publisher, ensure_topics, topic_specs
from modelbus.bus.aio import AsyncConsumerLoop, AsyncPublisher
from modelbus.bus.reading import read_topic
from modelbus.bus.schema_topic import kafka_schema_store
from modelbus.bus.topics import TopicSpec, data_topic
from modelbus.config import KafkaSettings
from modelbus.events import GenericRecord, SchemaStore, build_codec, example_event, new_meta
from modelbus.events import types as t
from modelbus.events.meta import DATA_PLANE_EVENTS, LIFECYCLE_EVENTS, now_utc

pytestmark = pytest.mark.integration
EVENT_TYPES = LIFECYCLE_EVENTS + DATA_PLANE_EVENTS


def _fresh(cls: type) -> Any:
    return dataclasses.replace(example_event(cls), meta=new_meta("test"))  # type: ignore[type-var]


def _scratch_topic(settings: KafkaSettings, name: str, partitions: int = 3) -> str:
    ensure_topics(settings.bootstrap_servers, [TopicSpec(name, partitions)])
    return name


def test_every_event_type_goes_through_the_broker_and_back(
    kafka_settings: KafkaSettings, unique: str
) -> None:
    topic = _scratch_topic(kafka_settings, f"test.every-event.{unique}")
    codec = build_codec(kafka_schema_store(kafka_settings.bootstrap_servers))
    publisher = Publisher(kafka_settings, codec, client_id="test")
    sent = [_fresh(cls) for cls in EVENT_TYPES]
    for event in sent:
        publisher.publish(event, topic=topic, key=type(event).__name__)
    publisher.flush()

    received: list[Any] = []
    handlers = {cls: [received.append] for cls in EVENT_TYPES}
    loop = ConsumerLoop(
        kafka_settings,
        group_id=f"test-{unique}",
        topics=[topic],
        dispatcher=Dispatcher(codec, handlers, producer="test"),
        publisher=publisher,
    )
    deadline = time.monotonic() + 30
    loop.run(until=lambda: len(received) >= len(sent) or time.monotonic() > deadline)

    assert sorted(received, key=lambda e: e.meta.event_id) == sorted(
        sent, key=lambda e: e.meta.event_id
    )
    assert loop.dead_lettered == 0


def test_every_event_type_goes_through_the_asyncio_bus_too(
    kafka_settings: KafkaSettings, unique: str
) -> None:
    topic = _scratch_topic(kafka_settings, f"test.every-event-aio.{unique}")
    codec = build_codec(kafka_schema_store(kafka_settings.bootstrap_servers))
    sent = [_fresh(cls) for cls in EVENT_TYPES]
    received: list[Any] = []

    async def scenario() -> None:
        publisher = AsyncPublisher(kafka_settings, codec, client_id="test-aio")
        await publisher.start()
        for event in sent:
            await publisher.publish(event, topic=topic, key=type(event).__name__)
        loop = AsyncConsumerLoop(
            kafka_settings,
            group_id=f"test-aio-{unique}",
            topics=[topic],
            dispatcher=Dispatcher(
                codec, {cls: [received.append] for cls in EVENT_TYPES}, producer="test"
            ),
            publisher=publisher,
        )
        await loop.start()
        deadline = time.monotonic() + 30
        while len(received) < len(sent) and time.monotonic() < deadline:
            await loop.poll_once()
        await loop.stop()
        await publisher.stop()

    asyncio.run(scenario())
    assert {e.meta.event_id for e in received} == {e.meta.event_id for e in sent}
    assert len(received) == len(sent)


def _bad_message(kind: str, good: bytes) -> bytes:
    return {
        "truncated": good[: len(good) // 2],
        "bad-magic": b"\x00\x00" + good[2:],
        "unknown-fingerprint": good[:2] + b"\xde\xad\xbe\xef\x00\x00\x00\x01" + good[10:],
        "body-mismatch": good[:10] + b"\xff" * 12,
        "trailing-bytes": good + b"\x00\x00",
        "oversized": good[:10] + bytes(5000),
        "empty": b"",
    }[kind]


EXPECTED_ERROR = {
    "truncated": "TruncatedMessage",
    "bad-magic": "BadMagic",
    "unknown-fingerprint": "UnknownSchema",
    "body-mismatch": "BodyMismatch",
    "trailing-bytes": "BodyMismatch",
    "oversized": "OversizedMessage",
    "empty": "EmptyMessage",
}


def test_mixed_stream_gives_exactly_the_good_to_handlers_and_the_bad_to_the_dlq(
    kafka_settings: KafkaSettings, unique: str
) -> None:
    model = f"mixed{unique}"
    ensure_topics(
        kafka_settings.bootstrap_servers,
        topic_specs([model], data_partitions=3, retention_ms=3_600_000)[4:],
    )
    requests = data_topic(model, "requests")
    codec = build_codec(kafka_schema_store(kafka_settings.bootstrap_servers))
    publisher = Publisher(kafka_settings, codec, client_id="test")
    publisher.publish_all_schemas()
    rng = random.Random(7)
    good_ids: set[str] = set()
    bad_by_value: dict[bytes, str] = {}
    for index in range(1000):
        request = t.PredictionRequest(
            meta=new_meta("test"),
            request_id=f"r{index}",
            model=model,
            sent_at=now_utc(),
            features={"x": float(index)},
        )
        encoded = codec.encode(request)
        if rng.random() < 0.1:
            kind = rng.choice(sorted(EXPECTED_ERROR))
            value = _bad_message(kind, encoded)
            bad_by_value[value] = kind  # each is unique: it holds a fresh event id
            publisher.produce(requests, f"r{index}", value, "garbage")
        else:
            good_ids.add(request.request_id)
            publisher.produce(requests, f"r{index}", encoded, t.PredictionRequest.SCHEMA_NAME)
    publisher.flush()

    handled: list[str] = []
    loop = ConsumerLoop(
        kafka_settings,
        group_id=f"test-{unique}",
        topics=[requests],
        dispatcher=Dispatcher(
            codec,
            {t.PredictionRequest: [lambda event: handled.append(event.request_id)]},
            producer="test",
            max_message_bytes=2048,
        ),
        publisher=publisher,
    )
    deadline = time.monotonic() + 60
    loop.run(until=lambda: loop.processed >= 1000 or time.monotonic() > deadline)

    assert loop.processed == 1000
    assert sorted(handled) == sorted(good_ids)
    dead = [
        codec.decode(envelope.value or b"")
        for envelope in read_topic(kafka_settings.bootstrap_servers, data_topic(model, "dlq"))
    ]
    assert len(dead) == 1000 - len(good_ids) == loop.dead_lettered
    assert all(isinstance(letter, t.DeadLetter) for letter in dead)
    for letter in dead:
        assert letter.source_topic == requests
        assert letter.reason.startswith(f"{requests}[{letter.source_partition}]@")
        assert letter.error_type == EXPECTED_ERROR[bad_by_value[letter.value or b""]]
    assert {letter.value or b"" for letter in dead} == set(bad_by_value)


def test_a_fresh_reader_decodes_a_schema_it_has_never_seen_in_code(
    kafka_settings: KafkaSettings, unique: str
) -> None:
    topic = _scratch_topic(kafka_settings, f"test.unknown-schema.{unique}", partitions=1)
    future_schema = {
        "type": "record",
        "name": f"modelbus.future.Event{unique}",
        "doc": "An event type written by a newer modelbus than the reader's.",
        "fields": [
            {"name": "model", "type": "string", "doc": "model"},
            {"name": "score", "type": "double", "doc": "score"},
        ],
    }
    writer_store = SchemaStore()
    writer_codec = build_codec(writer_store)
    known = writer_store.add(future_schema)
    publisher = Publisher(kafka_settings, writer_codec, client_id="future-writer")
    publisher.ensure_schema_published(known)
    publisher.produce(
        topic,
        "credit",
        writer_codec.encode_record({"model": "credit", "score": 0.75}, known),
        known.name,
        known,
    )
    publisher.flush()

    reader_codec = build_codec(kafka_schema_store(kafka_settings.bootstrap_servers))
    assert reader_codec.store.reader(known.name) is None
    [envelope] = list(read_topic(kafka_settings.bootstrap_servers, topic))
    decoded = reader_codec.decode(envelope.value or b"")
    assert decoded == GenericRecord(known.name, {"model": "credit", "score": 0.75})

"""The one reader on a real broker: exact ranges past transaction markers, decoding, following."""

from __future__ import annotations

import dataclasses
import uuid

import pytest
from confluent_kafka import Producer

from modelbus.bus import Publisher, ensure_topics
from modelbus.bus.reading import (
    end_offsets,
    follow_from_now,
    newest_ranges,
    read_events,
    read_only_consumer,
    read_ranges,
    read_topic,
)
from modelbus.bus.security import client_config
from modelbus.bus.topics import TopicSpec
from modelbus.config import KafkaSettings
from modelbus.events import build_codec, example_event, new_meta
from modelbus.events import types as t
from tests.support.waiting import NotYet, eventually

pytestmark = pytest.mark.integration


def _topic(settings: KafkaSettings, name: str) -> str:
    ensure_topics(settings.bootstrap_servers, [TopicSpec(name, 1)])
    return name


def _transaction(bootstrap: str, topic: str, values: list[bytes], *, commit: bool) -> None:
    producer = Producer({**client_config(bootstrap), "transactional.id": str(uuid.uuid4())})
    producer.init_transactions()
    producer.begin_transaction()
    for value in values:
        producer.produce(topic, value, b"k")
    assert producer.flush(30) == 0  # so an aborted transaction leaves its messages on the log
    if commit:
        producer.commit_transaction()
    else:
        producer.abort_transaction()


def _wait_for_end(bootstrap: str, topic: str, end: int) -> None:
    """Wait until a read_committed reader's end of partition 0 is ``end``.

    The coordinator writes a transaction's marker after commit/abort returns; only then does
    the end a read_committed reader sees move past it.
    """
    consumer = read_only_consumer(bootstrap, purpose="test-end")

    def reached() -> None:
        now = end_offsets(consumer, topic)[0]
        if now < end:
            raise NotYet(f"end {now} so far")

    try:
        eventually(reached, timeout_s=30)
    finally:
        consumer.close()


def test_the_newest_offsets_are_read_exactly_even_when_a_marker_ends_the_partition(
    kafka_settings: KafkaSettings, unique: str
) -> None:
    bootstrap = kafka_settings.bootstrap_servers
    topic = _topic(kafka_settings, f"test.reading.ranges.{unique}")
    _transaction(bootstrap, topic, [b"m0", b"m1", b"m2", b"m3", b"m4"], commit=True)
    _wait_for_end(bootstrap, topic, 6)
    consumer = read_only_consumer(bootstrap, purpose="test-ranges")
    try:
        ranges = newest_ranges(consumer, topic, 3)
        read = list(read_ranges(consumer, topic, ranges, timeout_s=30))
    finally:
        consumer.close()
    # Five messages and the commit marker take offsets 0-5; the newest three are 3, 4, marker.
    assert ranges == {0: (3, 6)}
    assert [(e.offset, e.value) for e in read] == [(3, b"m3"), (4, b"m4")]


def test_an_aborted_transaction_is_never_read_and_reading_still_ends(
    kafka_settings: KafkaSettings, unique: str
) -> None:
    bootstrap = kafka_settings.bootstrap_servers
    topic = _topic(kafka_settings, f"test.reading.aborted.{unique}")
    _transaction(bootstrap, topic, [b"kept"], commit=True)
    _transaction(bootstrap, topic, [b"aborted-1", b"aborted-2"], commit=False)
    _wait_for_end(bootstrap, topic, 5)  # kept, marker, two aborted, marker

    assert [e.value for e in read_topic(bootstrap, topic, timeout_s=30)] == [b"kept"]


def test_events_of_one_key_are_decoded_and_an_undecodable_one_is_reported_not_raised(
    kafka_settings: KafkaSettings, unique: str
) -> None:
    bootstrap = kafka_settings.bootstrap_servers
    topic = _topic(kafka_settings, f"test.reading.events.{unique}")
    codec = build_codec()
    publisher = Publisher(kafka_settings, codec, client_id=f"test-reading-{unique}")
    mine = dataclasses.replace(example_event(t.ModelPromoted), meta=new_meta("test"))
    other = dataclasses.replace(example_event(t.ModelPromoted), meta=new_meta("test"))
    publisher.publish(mine, topic=topic, key="mine")
    publisher.publish(other, topic=topic, key="other")
    publisher.flush()
    garbage = Producer(client_config(bootstrap))
    garbage.produce(topic, b"\xc3\x01not-avro", b"mine")
    assert garbage.flush(30) == 0

    skipped: list[str] = []
    events = list(
        read_events(
            bootstrap,
            topic,
            codec,
            key="mine",
            on_undecodable=lambda envelope, _error: skipped.append(envelope.where),
        )
    )

    assert events == [mine]
    assert skipped == [f"{topic}[0]@2"]


def test_a_follower_sees_only_what_is_produced_after_it_starts(
    kafka_settings: KafkaSettings, unique: str
) -> None:
    bootstrap = kafka_settings.bootstrap_servers
    topic = _topic(kafka_settings, f"test.reading.follow.{unique}")
    producer = Producer(client_config(bootstrap))
    producer.produce(topic, b"before", b"k")
    assert producer.flush(30) == 0
    follower = follow_from_now(bootstrap, topic, purpose="test-follow")
    try:
        producer.produce(topic, b"after", b"k")
        assert producer.flush(30) == 0
        message = follower.poll(30)
    finally:
        follower.close()

    assert message is not None
    assert (message.offset(), message.value()) == (1, b"after")

"""Kafka I/O behind one envelope: topics, publishers, consumer loops, dead letters."""

from modelbus.bus.consumer import ConsumerLoop
from modelbus.bus.dispatch import Dispatcher, Outcome, dead_letter
from modelbus.bus.envelope import Envelope
from modelbus.bus.publisher import EventPublisher, Publisher, PublishError
from modelbus.bus.reading import (
    decoded,
    follow_from_now,
    read_events,
    read_only_consumer,
    read_topic,
    replay,
)
from modelbus.bus.schema_topic import kafka_schema_store, read_schema_topic
from modelbus.bus.topics import (
    HEALTH_TOPIC,
    LIFECYCLE_TOPIC,
    SCHEMAS_TOPIC,
    data_topic,
    dlq_topic_for,
    ensure_topics,
    route,
    topic_specs,
)

__all__ = [
    "HEALTH_TOPIC",
    "LIFECYCLE_TOPIC",
    "SCHEMAS_TOPIC",
    "ConsumerLoop",
    "Dispatcher",
    "Envelope",
    "EventPublisher",
    "Outcome",
    "PublishError",
    "Publisher",
    "data_topic",
    "dead_letter",
    "decoded",
    "dlq_topic_for",
    "ensure_topics",
    "follow_from_now",
    "kafka_schema_store",
    "read_events",
    "read_only_consumer",
    "read_schema_topic",
    "read_topic",
    "replay",
    "route",
    "topic_specs",
]

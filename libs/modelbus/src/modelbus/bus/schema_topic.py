"""The compacted ``modelbus.schemas`` topic as the backing source of a SchemaStore."""

from __future__ import annotations

import json
import uuid
from typing import Any

import structlog
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from modelbus.bus.topics import SCHEMAS_TOPIC
from modelbus.events import SchemaStore
from modelbus.events.schemas import Schema, fingerprint_of

log = structlog.get_logger(__name__)


def read_schema_topic(bootstrap_servers: str, *, timeout_s: float = 10.0) -> list[Schema]:
    """Every schema on the schemas topic whose key matches its content's fingerprint."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap_servers,
            "group.id": f"modelbus-schema-reader-{uuid.uuid4()}",
            "enable.auto.commit": False,
        }
    )
    schemas: list[Schema] = []
    try:
        metadata = consumer.list_topics(SCHEMAS_TOPIC, timeout=timeout_s)
        partitions = list(metadata.topics[SCHEMAS_TOPIC].partitions)
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(SCHEMAS_TOPIC, p), timeout=timeout_s)[
                1
            ]
            for p in partitions
        }
        pending = {p for p, end in ends.items() if end > 0}
        consumer.assign([TopicPartition(SCHEMAS_TOPIC, p, OFFSET_BEGINNING) for p in pending])
        while pending:
            message = consumer.poll(timeout_s)
            if message is None:
                raise TimeoutError(f"{SCHEMAS_TOPIC} did not deliver up to its end in {timeout_s}s")
            if message.error():
                continue
            schema = _verified(message.key(), message.value())
            if schema is not None:
                schemas.append(schema)
            partition, offset = message.partition() or 0, message.offset() or 0
            if offset + 1 >= ends[partition]:
                pending.discard(partition)
    finally:
        consumer.close()
    return schemas


def _verified(key: bytes | None, value: bytes | None) -> Schema | None:
    if not key or not value:
        return None
    try:
        schema: dict[str, Any] = json.loads(value)
        if fingerprint_of(schema).hex() == key.decode():
            return schema
    except (ValueError, KeyError, TypeError):
        pass
    log.warning("ignoring schema whose key is not its fingerprint", key=key)
    return None


def kafka_schema_store(bootstrap_servers: str) -> SchemaStore:
    """A SchemaStore that asks the schemas topic for fingerprints it has never seen."""
    return SchemaStore(fetch_missing=lambda: read_schema_topic(bootstrap_servers))

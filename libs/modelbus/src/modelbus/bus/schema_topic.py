"""The compacted ``modelbus.schemas`` topic as the backing source of a SchemaStore."""

from __future__ import annotations

import json
from typing import Any

import structlog

from modelbus.bus.reading import read_topic
from modelbus.bus.topics import SCHEMAS_TOPIC
from modelbus.events import SchemaStore
from modelbus.events.schemas import Schema, fingerprint_of

log = structlog.get_logger(__name__)


def read_schema_topic(bootstrap_servers: str, *, timeout_s: float = 10.0) -> list[Schema]:
    """Every schema on the schemas topic whose key matches its content's fingerprint."""
    schemas = (
        _verified(envelope.key, envelope.value)
        for envelope in read_topic(bootstrap_servers, SCHEMAS_TOPIC, timeout_s=timeout_s)
    )
    return [schema for schema in schemas if schema is not None]


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

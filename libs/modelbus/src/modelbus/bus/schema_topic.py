"""The compacted ``modelbus.schemas`` topic as the backing source of a SchemaStore."""

from __future__ import annotations

import json
import weakref
from typing import Any

import structlog
from confluent_kafka import Consumer

from modelbus.bus.reading import end_offsets, read_only_consumer, read_ranges, read_topic
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


class SchemaTopic:
    """The schemas topic as a SchemaStore's backing source: each schema checked and given once.

    The first call reads the whole topic; each later one reads on from where the last ended,
    over the same consumer, so a refresh costs a ListOffsets and a fetch, not a new
    connection with its SASL handshake and a re-read of every schema. A failed read drops
    the consumer; the next call connects again and resumes where the last good read ended.
    Checking a fingerprint costs about a millisecond of pure Python, so only records not seen
    before are checked and handed over.
    """

    def __init__(self, bootstrap_servers: str, *, timeout_s: float = 10.0) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.timeout_s = timeout_s
        self.connects = 0
        """Consumers made so far (one, unless a read failed)."""
        self._consumer: Consumer | None = None
        self._closing: weakref.finalize[Any, Any] | None = None
        self._next: dict[int, int] = {}
        self._seen: set[tuple[bytes, bytes]] = set()

    def __call__(self) -> list[Schema]:
        """The verified schemas on the topic that earlier calls did not return."""
        try:
            records, ends = self._read_on()
        except BaseException:
            self.close()
            raise
        self._next = ends
        fresh = []
        for record in records:
            if record in self._seen:
                continue
            self._seen.add(record)
            schema = _verified(*record)
            if schema is not None:
                fresh.append(schema)
        return fresh

    def close(self) -> None:
        """Let the consumer go (the next call makes another)."""
        self._consumer = None
        if self._closing is not None:
            self._closing()  # closes it now, and not again when this object goes

    def _read_on(self) -> tuple[list[tuple[bytes, bytes]], dict[int, int]]:
        if self._consumer is None:
            self._consumer = read_only_consumer(
                self.bootstrap_servers, purpose="schemas", extra={"auto.offset.reset": "earliest"}
            )
            self.connects += 1
            self._closing = weakref.finalize(self, Consumer.close, self._consumer)
        consumer = self._consumer
        ends = end_offsets(consumer, SCHEMAS_TOPIC, timeout_s=self.timeout_s)
        ranges = {p: (self._next.get(p, 0), end) for p, end in ends.items()}
        read = read_ranges(consumer, SCHEMAS_TOPIC, ranges, timeout_s=self.timeout_s)
        return [(e.key or b"", e.value or b"") for e in read], ends


def kafka_schema_store(bootstrap_servers: str, *, refresh_every_s: float = 1.0) -> SchemaStore:
    """A SchemaStore that asks the schemas topic for fingerprints it has never seen.

    Only its first miss reads the topic on the caller's thread; later misses answer at once
    and a background thread refreshes (see SchemaStore).
    """
    return SchemaStore(
        fetch_missing=SchemaTopic(bootstrap_servers), refresh_every_s=refresh_every_s
    )

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


class SchemaTopic:
    """The schemas topic as a SchemaStore's backing source: each schema checked and given once.

    Checking a fingerprint costs about a millisecond of pure Python; a refresh re-reads the
    whole topic, so only the records it has not seen before are checked and handed over.
    """

    def __init__(self, bootstrap_servers: str, *, timeout_s: float = 10.0) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.timeout_s = timeout_s
        self._seen: set[tuple[bytes, bytes]] = set()

    def __call__(self) -> list[Schema]:
        """The verified schemas on the topic that earlier calls did not return."""
        fresh = []
        for envelope in read_topic(
            self.bootstrap_servers, SCHEMAS_TOPIC, timeout_s=self.timeout_s, purpose="schemas"
        ):
            record = (envelope.key or b"", envelope.value or b"")
            if record in self._seen:
                continue
            self._seen.add(record)
            schema = _verified(*record)
            if schema is not None:
                fresh.append(schema)
        return fresh


def kafka_schema_store(bootstrap_servers: str, *, refresh_every_s: float = 1.0) -> SchemaStore:
    """A SchemaStore that asks the schemas topic for fingerprints it has never seen.

    Only its first miss reads the topic on the caller's thread; later misses answer at once
    and a background thread refreshes (see SchemaStore).
    """
    return SchemaStore(
        fetch_missing=SchemaTopic(bootstrap_servers), refresh_every_s=refresh_every_s
    )

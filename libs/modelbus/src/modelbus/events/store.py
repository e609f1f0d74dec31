"""Schema store: every writer schema by fingerprint, plus today's reader schema by name."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from fastavro import parse_schema

from modelbus.events.schemas import Schema, fingerprint_of, full_name


@dataclass(frozen=True, slots=True)
class KnownSchema:
    """A schema as the codec uses it."""

    fingerprint: bytes
    name: str
    schema: Schema
    parsed: Any


class SchemaStore:
    """In-memory fingerprint -> schema map, refreshed from a backing source on a miss.

    ``fetch_missing`` (the ``modelbus.schemas`` topic, in production) is asked for schemas a
    reader has never seen, so an auditor years later decodes whatever was written.
    """

    def __init__(
        self,
        fetch_missing: Callable[[], Iterable[Schema]] | None = None,
        *,
        refetch_after_s: float = 5.0,
    ) -> None:
        self._by_fingerprint: dict[bytes, KnownSchema] = {}
        # A fingerprint still unknown after a fetch is not fetched for again for a while, so a
        # stream of garbage cannot turn into a stream of full reads of the schemas topic.
        self._missing_since: dict[bytes, float] = {}
        self.refetch_after_s = refetch_after_s
        self._readers: dict[str, KnownSchema] = {}
        self._fetch_missing = fetch_missing
        self._lock = threading.Lock()

    def add(self, schema: Schema, *, reader: bool = True) -> KnownSchema:
        """Know ``schema``; with ``reader`` it also becomes today's schema for its name."""
        known = KnownSchema(
            fingerprint=fingerprint_of(schema),
            name=full_name(schema),
            schema=schema,
            parsed=parse_schema(schema),
        )
        with self._lock:
            self._by_fingerprint.setdefault(known.fingerprint, known)
            if reader:
                self._readers[known.name] = known
        return known

    def reader(self, name: str) -> KnownSchema | None:
        """Today's schema for a full name, if this process knows one."""
        return self._readers.get(name)

    def lookup(self, fingerprint: bytes) -> KnownSchema | None:
        """The writer schema for a fingerprint, fetching from the backing source on a miss."""
        known = self._by_fingerprint.get(fingerprint)
        if known is not None or self._fetch_missing is None:
            return known
        now = time.monotonic()
        if now - self._missing_since.get(fingerprint, -self.refetch_after_s) < self.refetch_after_s:
            return None
        for schema in self._fetch_missing():
            self.add(schema, reader=False)
        known = self._by_fingerprint.get(fingerprint)
        if known is None:
            self._missing_since[fingerprint] = now
        return known

    def all(self) -> list[KnownSchema]:
        """Every known schema (what a writer publishes)."""
        with self._lock:
            return list(self._by_fingerprint.values())

    @staticmethod
    def to_json(known: KnownSchema) -> bytes:
        """The value published on the schemas topic: the expanded schema, docs included."""
        return json.dumps(known.schema, sort_keys=True).encode()

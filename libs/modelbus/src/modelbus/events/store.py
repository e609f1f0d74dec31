"""Schema store: every writer schema by fingerprint, plus today's reader schema by name."""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import structlog
from fastavro import parse_schema

from modelbus.events.schemas import Schema, fingerprint_of, full_name

log = structlog.get_logger(__name__)


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

    Only the first miss of the store's life fetches on the caller's thread (the warm-up that
    loads every schema published so far). Every later miss answers None at once, remembers
    the fingerprint as missing for ``refetch_after_s`` (the negative cache) and asks one
    background thread for a refresh; refreshes are coalesced and at most one runs every
    ``refresh_every_s``. A stream of unknown fingerprints therefore costs the caller a dict
    lookup each, never a read of the schemas topic; the fingerprints a refresh finds are
    known to the next lookup.
    """

    MAX_MISSING = 65_536  # fingerprints remembered as missing; the oldest are forgotten first

    def __init__(
        self,
        fetch_missing: Callable[[], Iterable[Schema]] | None = None,
        *,
        refetch_after_s: float = 5.0,
        refresh_every_s: float = 1.0,
    ) -> None:
        self._by_fingerprint: dict[bytes, KnownSchema] = {}
        # A fingerprint still unknown after a fetch is not fetched for again for a while, so a
        # stream of garbage cannot turn into a stream of full reads of the schemas topic.
        self._missing_since: OrderedDict[bytes, float] = OrderedDict()
        self.refetch_after_s = refetch_after_s
        self.refresh_every_s = refresh_every_s
        self._readers: dict[str, KnownSchema] = {}
        self._fetch_missing = fetch_missing
        self._lock = threading.Lock()
        self._fetching = threading.Lock()  # one fetch at a time: the warm-up or a refresh
        self._warmed = False
        self._refresh_wanted = threading.Event()
        self._refresher: threading.Thread | None = None
        self.refreshes = 0
        """Background refreshes completed (failed ones included)."""

    def add(self, schema: Schema, *, reader: bool = True) -> KnownSchema:
        """Know ``schema``; with ``reader`` it also becomes today's schema for its name."""
        fingerprint = fingerprint_of(schema)
        already = self._by_fingerprint.get(fingerprint)
        if already is not None and not reader:
            return already  # a refresh re-reads every schema: parse only the new ones
        known = KnownSchema(
            fingerprint=fingerprint,
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
        """The writer schema for a fingerprint; None at once when unknown (see the class doc)."""
        known = self._by_fingerprint.get(fingerprint)
        if known is not None or self._fetch_missing is None:
            return known
        just_fetched = not self._warmed
        if just_fetched:
            self.warm_up()
            known = self._by_fingerprint.get(fingerprint)
            if known is not None:
                return known
        now = time.monotonic()
        with self._lock:
            since = self._missing_since.get(fingerprint)
            if since is not None and now - since < self.refetch_after_s:
                return None
            self._missing_since[fingerprint] = now
            self._missing_since.move_to_end(fingerprint)
            while len(self._missing_since) > self.MAX_MISSING:
                self._missing_since.popitem(last=False)
        if not just_fetched:
            self._request_refresh()
        return None

    def warm_up(self) -> None:
        """Load every schema the backing source holds now (on the caller's thread; once)."""
        if self._fetch_missing is None:
            return
        with self._fetching:
            if self._warmed:
                return
            for schema in self._fetch_missing():
                self.add(schema, reader=False)
            self._warmed = True

    def _request_refresh(self) -> None:
        self._refresh_wanted.set()
        with self._lock:
            if self._refresher is None:
                self._refresher = threading.Thread(
                    target=self._refresh_forever, name="schema-refresh", daemon=True
                )
                self._refresher.start()

    def _refresh_forever(self) -> None:
        assert self._fetch_missing is not None
        pause = threading.Event()  # never set: a pause that is not a bare sleep
        while True:
            self._refresh_wanted.wait()
            self._refresh_wanted.clear()
            try:
                with self._fetching:
                    for schema in self._fetch_missing():
                        self.add(schema, reader=False)
            except Exception as error:  # the next miss asks again
                log.warning("schema refresh failed", error=str(error))
            self.refreshes += 1
            pause.wait(self.refresh_every_s)

    def all(self) -> list[KnownSchema]:
        """Every known schema (what a writer publishes)."""
        with self._lock:
            return list(self._by_fingerprint.values())

    @staticmethod
    def to_json(known: KnownSchema) -> bytes:
        """The value published on the schemas topic: the expanded schema, docs included."""
        return json.dumps(known.schema, sort_keys=True).encode()

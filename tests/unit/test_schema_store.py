"""The schema store answers unknown fingerprints at once and refreshes in the background."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

import pytest

from modelbus.events import SchemaStore, UnknownSchema, build_codec
from modelbus.events.schemas import Schema, fingerprint_of

FUTURE: Schema = {
    "type": "record",
    "name": "modelbus.events.FeatureStoreSynced",
    "doc": "A schema published after the reader started.",
    "fields": [{"name": "rows", "type": "long", "doc": "rows"}],
}


class SlowSource:
    """A schemas topic whose reads after the first block until ``release`` is set."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.reads = 0
        self.published: list[Schema] = []

    def __call__(self) -> Iterable[Schema]:
        self.reads += 1
        if self.reads > 1 and not self.release.wait(timeout=30):
            raise TimeoutError("the test never released the refresh")
        return list(self.published)


def eventually(condition: object, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        threading.Event().wait(0.01)


def test_an_unknown_fingerprint_returns_at_once_while_a_refresh_is_pending() -> None:
    source = SlowSource()
    store = SchemaStore(fetch_missing=source, refresh_every_s=0.0)
    assert store.lookup(b"\x01" * 8) is None  # the warm-up: the one read on the caller's thread
    assert store.lookup(b"\x02" * 8) is None  # starts a refresh, which now blocks
    eventually(lambda: source.reads == 2)

    started = time.perf_counter()
    answers = [store.lookup(bytes([3, i % 256, i // 256]) + bytes(5)) for i in range(1000)]
    elapsed = time.perf_counter() - started

    assert answers == [None] * 1000
    assert elapsed < 0.25  # 1,000 lookups; each costs microseconds, none waits for the read
    assert source.reads == 2
    source.release.set()


def test_a_schema_published_later_is_known_once_the_background_refresh_ran() -> None:
    source = SlowSource()
    store = SchemaStore(fetch_missing=source, refresh_every_s=0.0)
    assert store.lookup(b"\x01" * 8) is None
    source.published.append(FUTURE)
    fingerprint = fingerprint_of(FUTURE)

    assert store.lookup(fingerprint) is None  # not waited for
    source.release.set()
    eventually(lambda: store.refreshes >= 1)

    known = store.lookup(fingerprint)
    assert known is not None
    assert known.name == "modelbus.events.FeatureStoreSynced"


def test_misses_of_one_fingerprint_ask_for_one_refresh_until_the_negative_cache_expires() -> None:
    source = SlowSource()
    source.release.set()
    store = SchemaStore(fetch_missing=source, refetch_after_s=60, refresh_every_s=0.0)
    for _ in range(50):
        assert store.lookup(b"\x07" * 8) is None

    assert source.reads == 1  # the warm-up found nothing; the fingerprint is cached as missing


def test_a_flood_of_distinct_fingerprints_costs_few_refreshes_and_bounded_memory() -> None:
    source = SlowSource()
    source.release.set()
    store = SchemaStore(fetch_missing=source, refresh_every_s=0.2)
    codec = build_codec(store)
    flood = 3 * SchemaStore.MAX_MISSING // 2

    started = time.monotonic()
    for i in range(flood):
        with pytest.raises(UnknownSchema):
            codec.decode(b"\xc3\x01" + i.to_bytes(8, "big") + b"x")
    elapsed = time.monotonic() - started

    assert len(store._missing_since) == SchemaStore.MAX_MISSING
    # One warm-up, then at most one refresh per refresh_every_s (plus the one in flight).
    assert source.reads <= 2 + elapsed / 0.2

"""A flood of unknown schema fingerprints does not hold up requests whose schema is known,
and the refreshes it asks for are cheap: they read on over one consumer.

Requests are produced to and read back from the real broker; the reader decodes them with a
schema store backed by the real ``modelbus.schemas`` topic, as inference does. The decode
loop is timed on the test's thread, the schema refreshes run on the store's own thread.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path

import pytest
from confluent_kafka import Producer

from modelbus.bus.envelope import Envelope
from modelbus.bus.reading import read_topic
from modelbus.bus.schema_topic import SchemaTopic, kafka_schema_store
from modelbus.bus.security import client_config
from modelbus.bus.topics import SCHEMAS_TOPIC, data_topic
from modelbus.config import KafkaSettings
from modelbus.events import Codec, UnknownSchema, build_codec
from modelbus.events.codec import MAGIC
from modelbus.events.schemas import fingerprint_of
from tests.support.broker import RequestProducer, create_model_topics, request_codec
from tests.support.packages import CONTRACT, credit_rows

pytestmark = pytest.mark.integration
NORMAL = 1_000  # known-schema requests per phase
FLOOD = 10_000  # distinct unknown fingerprints, spread among the second phase's requests


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


def decode_all(codec: Codec, envelopes: list[Envelope]) -> tuple[list[float], list[float], int]:
    """(decode seconds of each known request, seconds since the previous one, unknown count).

    The second list is what a request waits behind the messages ahead of it on the stream.
    """
    decode_s, waited_s, unknown = [], [], 0
    previous = time.perf_counter()
    for envelope in envelopes:
        started = time.perf_counter()
        try:
            codec.decode(envelope.value or b"", where=envelope.where)
        except UnknownSchema:
            unknown += 1  # the caller dead-letters these
            continue
        done = time.perf_counter()
        decode_s.append(done - started)
        waited_s.append(done - previous)
        previous = done
    return decode_s, waited_s, unknown


def test_ten_thousand_unknown_fingerprints_do_not_stall_known_requests(
    kafka_settings: KafkaSettings, unique: str
) -> None:
    model = f"flood{unique}"
    create_model_topics(kafka_settings, model, partitions=1)
    producer = RequestProducer(kafka_settings, request_codec())
    rows, _labels = credit_rows(NORMAL, seed=3)
    for number, row in enumerate(rows):  # phase 1: known requests only
        producer.send(model, f"a{number}", row)
    per_request = FLOOD // NORMAL  # 10 unknown fingerprints ahead of each request
    for number, row in enumerate(rows):  # phase 2: the flood, requests among it
        for k in range(per_request):
            fingerprint = (number * per_request + k).to_bytes(4, "big") + unique[:4].encode()
            producer.send_raw(model, f"x{number}-{k}", MAGIC + fingerprint + b"\x00")
        producer.send(model, f"b{number}", row)
    producer.flush()
    envelopes = list(read_topic(kafka_settings.bootstrap_servers, data_topic(model, "requests")))
    assert len(envelopes) == 2 * NORMAL + FLOOD
    store = kafka_schema_store(kafka_settings.bootstrap_servers)
    store.warm_up()  # what a service does before it consumes
    codec = build_codec(store, models=(CONTRACT,))

    quiet_decode, quiet_wait, quiet_unknown = decode_all(codec, envelopes[:NORMAL])
    started = time.monotonic()
    flood_decode, flood_wait, flood_unknown = decode_all(codec, envelopes[NORMAL:])
    flood_s = time.monotonic() - started

    assert (quiet_unknown, flood_unknown) == (0, FLOOD)
    assert (len(quiet_decode), len(flood_decode)) == (NORMAL, NORMAL)
    # Before, every distinct fingerprint read the whole schemas topic on this thread (about
    # 0.1 s each: 1,000 s here). Now a miss is a dict lookup; refreshes run elsewhere, at most
    # one a second.
    assert flood_s < 10.0
    assert store.refreshes <= flood_s / store.refresh_every_s + 2
    # Before, the ten misses ahead of each request cost it over a second; now none waits.
    assert max(flood_wait) < 1.0
    figures = {
        "known_requests": NORMAL,
        "unknown_fingerprints": FLOOD,
        "decode_p99_us": {"quiet": p99(quiet_decode) * 1e6, "flood": p99(flood_decode) * 1e6},
        "decode_p50_us": {
            "quiet": statistics.median(quiet_decode) * 1e6,
            "flood": statistics.median(flood_decode) * 1e6,
        },
        "wait_p99_us": {"quiet": p99(quiet_wait) * 1e6, "flood": p99(flood_wait) * 1e6},
        "flood_s": flood_s,
        "background_refreshes": store.refreshes,
    }
    print(json.dumps(figures))
    if os.environ.get("MODELBUS_FLOOD_FIGURES"):
        Path(os.environ["MODELBUS_FLOOD_FIGURES"]).write_text(json.dumps(figures, indent=2))


def test_a_refresh_reads_on_over_one_consumer_and_finds_a_schema_published_since(
    kafka_settings: KafkaSettings, unique: str
) -> None:
    source = SchemaTopic(kafka_settings.bootstrap_servers)
    try:
        everything = source()
        assert everything, "the session's services published their schemas"
        assert source() == []  # nothing new: nothing handed over twice
        schema = {
            "type": "record",
            "name": f"Probe{unique}",
            "namespace": "modelbus.tests",
            "fields": [{"name": "x", "type": "int"}],
        }
        key = fingerprint_of(schema).hex().encode()
        producer = Producer(client_config(kafka_settings.bootstrap_servers))
        value = json.dumps(schema).encode()
        producer.produce(SCHEMAS_TOPIC, key=key, value=value)
        producer.produce(SCHEMAS_TOPIC, key=b"not-its-fingerprint", value=value)
        assert producer.flush(10) == 0

        fresh = source()

        assert [fingerprint_of(s) for s in fresh] == [fingerprint_of(schema)]
        assert source.connects == 1  # the same consumer all along: no reconnect per refresh
    finally:
        source.close()

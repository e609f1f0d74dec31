"""Codec speed and the raw broker pass-through ceiling -> benchmarks/results/codec.json.

    python -m benchmarks.codec [--messages 100000]

Pass-through = consume + produce the same bytes in one process, with no decoding: the most a
single Python worker can move through this broker. Later inference numbers are compared with it.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
import uuid
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from benchmarks.common import write_result
from modelbus.bus import ensure_topics
from modelbus.bus.security import client_config
from modelbus.bus.topics import TopicSpec
from modelbus.config import KafkaSettings
from modelbus.events import build_codec, example_event, new_meta
from modelbus.events import types as t
from modelbus.events.meta import now_utc

CREDIT_FEATURES = {
    "salary": 61_250.5,
    "commission": 12_000.0,
    "age": 42,
    "elevel": 2,
    "car": 7,
    "zipcode": 4,
    "hvalue": 250_000.0,
    "hyears": 12,
    "loan": 150_000.0,
}


def _time_per_call_us(function: Any, repeats: int, rounds: int = 5) -> dict[str, float]:
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(repeats):
            function()
        samples.append((time.perf_counter() - start) / repeats * 1e6)
    return {"median_us": round(statistics.median(samples), 3), "best_us": round(min(samples), 3)}


def codec_speed(repeats: int = 20_000) -> dict[str, Any]:
    """µs to encode and decode a 9-feature PredictionRequest and a ModelTrained."""
    codec = build_codec(models=("credit",))
    request = t.PredictionRequest(
        meta=new_meta("bench"),
        request_id=str(uuid.uuid4()),
        model="credit",
        sent_at=now_utc(),
        features=CREDIT_FEATURES,
    )
    trained = dataclasses.replace(example_event(t.ModelTrained), meta=new_meta("bench"))  # type: ignore[type-var]
    request_schema = "modelbus.models.credit.PredictionRequest"
    encoded_request = codec.encode(request, schema_name=request_schema)
    encoded_trained = codec.encode(trained)
    request_known = codec.store.reader(request_schema)
    assert request_known is not None
    request_record = request.to_avro()
    return {
        "PredictionRequest_9_features": {
            "bytes": len(encoded_request),
            "encode": _time_per_call_us(
                lambda: codec.encode(request, schema_name=request_schema), repeats
            ),
            "decode": _time_per_call_us(lambda: codec.decode(encoded_request), repeats),
            "encode_record_hot_path": _time_per_call_us(
                lambda: codec.encode_record(request_record, request_known), repeats
            ),
            "decode_record_hot_path": _time_per_call_us(
                lambda: codec.decode_record(encoded_request), repeats
            ),
        },
        "ModelTrained": {
            "bytes": len(encoded_trained),
            "encode": _time_per_call_us(lambda: codec.encode(trained), repeats),
            "decode": _time_per_call_us(lambda: codec.decode(encoded_trained), repeats),
        },
    }


def _fill(bootstrap: str, topic: str, payload: bytes, messages: int) -> None:
    producer = Producer({**client_config(bootstrap), "linger.ms": 20, "acks": "all"})
    for index in range(messages):
        while True:
            try:
                producer.produce(topic, payload, str(index).encode())
                break
            except BufferError:
                producer.poll(0.05)
    producer.flush()


def passthrough(
    bootstrap: str, *, messages: int = 100_000, payload_bytes: int = 150, transactional: bool
) -> dict[str, Any]:
    """Messages/s for consume -> produce of the same bytes in one process (one partition)."""
    run = uuid.uuid4().hex[:8]
    source, sink = f"bench.passthrough.in.{run}", f"bench.passthrough.out.{run}"
    ensure_topics(bootstrap, [TopicSpec(source, 1), TopicSpec(sink, 1)])
    _fill(bootstrap, source, b"\xc3\x01" + bytes(payload_bytes - 2), messages)

    consumer = Consumer(
        {
            **client_config(bootstrap),
            "group.id": f"bench-{run}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
        }
    )
    producer_config: dict[str, Any] = {**client_config(bootstrap), "linger.ms": 5}
    if transactional:
        # As inference does: with the default 100 ms retry backoff, each transaction waits out
        # the broker's CONCURRENT_TRANSACTIONS answer while the previous markers are written.
        producer_config |= {
            "transactional.id": f"bench-{run}",
            "retry.backoff.ms": 2,
            "retry.backoff.max.ms": 10,
        }
    producer = Producer(producer_config)
    if transactional:
        producer.init_transactions()
    consumer.assign([TopicPartition(source, 0, 0)])
    moved = 0
    start = time.perf_counter()
    while moved < messages:
        batch = consumer.consume(1000, 1.0)
        if not batch:
            continue
        if transactional:
            producer.begin_transaction()
        for message in batch:
            while True:
                try:
                    producer.produce(sink, message.value(), message.key())
                    break
                except BufferError:
                    producer.poll(0.01)
        moved += len(batch)
        if transactional:
            producer.send_offsets_to_transaction(
                [TopicPartition(source, 0, batch[-1].offset() + 1)],
                consumer.consumer_group_metadata(),
            )
            producer.commit_transaction()
        else:
            producer.poll(0)
    producer.flush()
    elapsed = time.perf_counter() - start
    consumer.close()
    return {
        "messages": messages,
        "payload_bytes": payload_bytes,
        "seconds": round(elapsed, 3),
        "messages_per_s": round(messages / elapsed),
    }


def main() -> None:
    """Run every measurement and write the JSON result."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=100_000)
    args = parser.parse_args()
    settings = KafkaSettings()
    result = {
        "codec": codec_speed(),
        "broker_passthrough": {
            "note": "consume + produce the same bytes, one process, one partition, no decoding",
            "plain": passthrough(
                settings.bootstrap_servers, messages=args.messages, transactional=False
            ),
            "transactional_1000_per_txn": passthrough(
                settings.bootstrap_servers, messages=args.messages, transactional=True
            ),
        },
    }
    path = write_result("codec", result)
    print(path.read_text())


if __name__ == "__main__":
    main()

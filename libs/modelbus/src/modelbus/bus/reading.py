"""Reading a topic up to its end: replays of the lifecycle log, the schemas topic, audits."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, TopicPartition

from modelbus.bus.envelope import Envelope, from_confluent


def end_offsets(consumer: Consumer, topic: str, *, timeout_s: float = 10.0) -> dict[int, int]:
    """Each partition's high watermark now; LookupError naming the fix if the topic is absent."""
    metadata = consumer.list_topics(topic, timeout=timeout_s)
    described = metadata.topics.get(topic)
    if described is None or described.error is not None:
        raise LookupError(f"topic {topic!r} does not exist; run `modelbus topics create` first")
    return {
        partition: consumer.get_watermark_offsets(
            TopicPartition(topic, partition), timeout=timeout_s
        )[1]
        for partition in described.partitions
    }


def replay(consumer: Consumer, topic: str, *, timeout_s: float = 30.0) -> Iterator[Envelope]:
    """Assign every partition from offset 0; yield each message up to the end as of now.

    The consumer stays assigned afterwards, so a caller can go on reading live messages.
    """
    ends = end_offsets(consumer, topic, timeout_s=timeout_s)
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
    pending = {p for p, end in ends.items() if end > 0}
    deadline = time.monotonic() + timeout_s
    while pending:
        if time.monotonic() > deadline:
            raise TimeoutError(f"reading {topic} to its end took over {timeout_s}s")
        message = consumer.poll(0.2)
        if message is None or message.error():
            # Transaction markers take offsets but are never delivered: compare positions.
            positions = consumer.position([TopicPartition(topic, p) for p in pending])
            pending -= {tp.partition for tp in positions if tp.offset >= ends[tp.partition]}
            continue
        envelope = from_confluent(message)
        yield envelope
        if envelope.offset + 1 >= ends[envelope.partition]:
            pending.discard(envelope.partition)


def read_topic(
    bootstrap_servers: str,
    topic: str,
    *,
    from_beginning: bool = True,
    follow: bool = False,
    timeout_s: float = 30.0,
) -> Iterator[Envelope]:
    """Every committed message of ``topic`` up to its end; with ``follow``, then new ones too."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap_servers,
            "group.id": f"modelbus-reader-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    try:
        if from_beginning:
            yield from replay(consumer, topic, timeout_s=timeout_s)
        else:
            ends = end_offsets(consumer, topic)
            consumer.assign([TopicPartition(topic, p, OFFSET_END) for p in ends])
        while follow:
            message = consumer.poll(1.0)
            if message is not None and not message.error():
                yield from_confluent(message)
    finally:
        consumer.close()

"""Reading topics from the start to their current end (tail, audit, selfcheck)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, TopicPartition

from modelbus.bus.envelope import Envelope, from_confluent


def read_topic(
    bootstrap_servers: str,
    topic: str,
    *,
    from_beginning: bool = True,
    follow: bool = False,
    poll_timeout_s: float = 1.0,
) -> Iterator[Envelope]:
    """Every committed message of ``topic``; stops at the end unless ``follow``."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap_servers,
            "group.id": f"modelbus-reader-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        if metadata.topics[topic].error is not None:
            raise LookupError(f"topic {topic!r} does not exist; run `modelbus topics create` first")
        partitions = list(metadata.topics[topic].partitions)
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in partitions
        }
        start = OFFSET_BEGINNING if from_beginning else OFFSET_END
        consumer.assign([TopicPartition(topic, p, start) for p in partitions])
        pending = {p for p, end in ends.items() if end > 0} if from_beginning else set()
        while follow or pending:
            message = consumer.poll(poll_timeout_s)
            if message is None:
                if not follow and _reached_ends(consumer, topic, pending, ends):
                    return
                continue
            if message.error():
                continue
            envelope = from_confluent(message)
            yield envelope
            if envelope.offset + 1 >= ends.get(envelope.partition, 0):
                pending.discard(envelope.partition)
    finally:
        consumer.close()


def _reached_ends(consumer: Consumer, topic: str, pending: set[int], ends: dict[int, int]) -> bool:
    # Transaction markers take offsets but are never delivered: compare positions, not offsets.
    positions = consumer.position([TopicPartition(topic, p) for p in pending])
    for position in positions:
        if position.offset >= ends[position.partition]:
            pending.discard(position.partition)
    return not pending

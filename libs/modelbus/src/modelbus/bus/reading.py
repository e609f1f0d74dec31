"""The one way to read a topic without owning it: replays, audits, followers, snapshots.

A read-only consumer has a group id of its own, never commits and sees committed messages
only, so reading never moves a service's offsets nor shows an aborted transaction.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from modelbus.bus.envelope import Envelope, from_confluent
from modelbus.bus.security import client_config
from modelbus.events import Codec, CodecError

OnUndecodable = Callable[[Envelope, CodecError], None]


def read_only_consumer(
    bootstrap_servers: str, *, purpose: str, extra: Mapping[str, Any] | None = None
) -> Consumer:
    """A consumer that only reads: group ``modelbus-<purpose>-<uuid>``, no commits, read_committed.

    ``extra`` adds librdkafka settings (``fetch.wait.max.ms`` for a latency probe, say).
    """
    return Consumer(
        {
            **client_config(bootstrap_servers),
            "group.id": f"modelbus-{purpose}-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            **(extra or {}),
        }
    )


def watermarks(
    consumer: Consumer, topic: str, *, timeout_s: float = 10.0
) -> dict[int, tuple[int, int]]:
    """partition -> (low, high) offsets now; LookupError naming the fix if the topic is absent."""
    metadata = consumer.list_topics(topic, timeout=timeout_s)
    described = metadata.topics.get(topic)
    if described is None or described.error is not None:
        raise LookupError(f"topic {topic!r} does not exist; run `modelbus topics create` first")
    marks = {}
    for partition in sorted(described.partitions):
        low, high = consumer.get_watermark_offsets(
            TopicPartition(topic, partition), timeout=timeout_s
        )
        marks[partition] = (low, high)
    return marks


def end_offsets(consumer: Consumer, topic: str, *, timeout_s: float = 10.0) -> dict[int, int]:
    """Each partition's high watermark now; LookupError naming the fix if the topic is absent."""
    return {p: high for p, (_low, high) in watermarks(consumer, topic, timeout_s=timeout_s).items()}


def newest_ranges(
    consumer: Consumer, topic: str, per_partition: int, *, timeout_s: float = 10.0
) -> dict[int, tuple[int, int]]:
    """partition -> (start, end): the newest ``per_partition`` offsets of each, as of now."""
    return {
        p: (max(low, high - per_partition), high)
        for p, (low, high) in watermarks(consumer, topic, timeout_s=timeout_s).items()
    }


def read_ranges(
    consumer: Consumer,
    topic: str,
    ranges: Mapping[int, tuple[int, int]],
    *,
    timeout_s: float = 30.0,
) -> Iterator[Envelope]:
    """Exactly the messages of ``topic`` in partition -> [start, end); TimeoutError if slow."""
    wanted = {p: (start, end) for p, (start, end) in ranges.items() if end > start}
    consumer.assign([TopicPartition(topic, p, start) for p, (start, _end) in wanted.items()])
    ends = {p: end for p, (_start, end) in wanted.items()}
    for envelope in _until_ends(consumer, topic, ends, timeout_s=timeout_s):
        if envelope.offset < ends[envelope.partition]:
            yield envelope


def replay(consumer: Consumer, topic: str, *, timeout_s: float = 30.0) -> Iterator[Envelope]:
    """Assign every partition from offset 0; yield each message up to the end as of now.

    The consumer stays assigned afterwards, so a caller can go on reading live messages; a
    message past the end that arrives while other partitions catch up is yielded, not lost.
    """
    ends = end_offsets(consumer, topic, timeout_s=timeout_s)
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
    return _until_ends(
        consumer, topic, {p: end for p, end in ends.items() if end > 0}, timeout_s=timeout_s
    )


def _until_ends(
    consumer: Consumer, topic: str, ends: Mapping[int, int], *, timeout_s: float
) -> Iterator[Envelope]:
    """Yield what ``consumer`` reads until its position reaches each partition's end in ``ends``."""
    pending = set(ends)
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
        if envelope.offset + 1 >= ends.get(envelope.partition, 0):
            pending.discard(envelope.partition)


def assign_at_end(consumer: Consumer, topic: str, *, timeout_s: float = 10.0) -> None:
    """Assign every partition of ``topic`` at its end as of now: only what comes next is read."""
    ends = end_offsets(consumer, topic, timeout_s=timeout_s)
    consumer.assign([TopicPartition(topic, p, end) for p, end in ends.items()])


def follow_from_now(
    bootstrap_servers: str, topic: str, *, purpose: str, extra: Mapping[str, Any] | None = None
) -> Consumer:
    """A read-only consumer of ``topic`` that sees the messages produced after this call."""
    consumer = read_only_consumer(bootstrap_servers, purpose=purpose, extra=extra)
    try:
        assign_at_end(consumer, topic)
    except BaseException:
        consumer.close()
        raise
    return consumer


def read_topic(
    bootstrap_servers: str,
    topic: str,
    *,
    from_beginning: bool = True,
    follow: bool = False,
    timeout_s: float = 30.0,
    purpose: str = "reader",
) -> Iterator[Envelope]:
    """Every committed message of ``topic`` up to its end; with ``follow``, then new ones too."""
    consumer = read_only_consumer(bootstrap_servers, purpose=purpose)
    try:
        if from_beginning:
            yield from replay(consumer, topic, timeout_s=timeout_s)
        else:
            assign_at_end(consumer, topic)
        while follow:
            message = consumer.poll(1.0)
            if message is not None and not message.error():
                yield from_confluent(message)
    finally:
        consumer.close()


def decoded(
    envelopes: Iterable[Envelope], codec: Codec, *, on_undecodable: OnUndecodable | None = None
) -> Iterator[Any]:
    """Each envelope's event; an undecodable one goes to ``on_undecodable`` (raised without one)."""
    for envelope in envelopes:
        try:
            event = codec.decode(envelope.value or b"", where=envelope.where)
        except CodecError as error:
            if on_undecodable is None:
                raise
            on_undecodable(envelope, error)
            continue
        yield event


def read_events(
    bootstrap_servers: str,
    topic: str,
    codec: Codec,
    *,
    key: str | None = None,
    follow: bool = False,
    timeout_s: float = 30.0,
    purpose: str = "reader",
    on_undecodable: OnUndecodable | None = None,
) -> Iterator[Any]:
    """The events of ``topic`` (only those keyed ``key`` if given) decoded, to its end or on."""
    envelopes: Iterable[Envelope] = read_topic(
        bootstrap_servers, topic, follow=follow, timeout_s=timeout_s, purpose=purpose
    )
    if key is not None:
        wanted = key.encode()
        envelopes = (e for e in envelopes if e.key == wanted and e.value)
    return decoded(envelopes, codec, on_undecodable=on_undecodable)


__all__ = [
    "OnUndecodable",
    "assign_at_end",
    "decoded",
    "end_offsets",
    "follow_from_now",
    "newest_ranges",
    "read_events",
    "read_only_consumer",
    "read_ranges",
    "read_topic",
    "replay",
    "watermarks",
]

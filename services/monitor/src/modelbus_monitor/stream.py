"""The Kafka side of the monitor: one consumer over the lifecycle and every model's data topics.

At-least-once with de-duplication, no pickled state: on start each data partition is read
from the tail (``replay_s`` back, or the group's committed offset if older), which rebuilds
joins, detectors and windows; alerts and windows the logs already hold are not published
again (their ids are deterministic too). Offsets are committed after what they cover was
published and flushed; they also mark which bad messages were already dead-lettered.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import structlog
from confluent_kafka import Consumer, Message, TopicPartition

from modelbus.bus import LIFECYCLE_TOPIC, Envelope, EventPublisher, data_topic, dead_letter
from modelbus.bus.envelope import from_confluent
from modelbus.events import Codec, CodecError
from modelbus_monitor.ingest import Ingest
from modelbus_monitor.merge import TimeOrderedMerge
from modelbus_monitor.monitors import Monitors

log = structlog.get_logger(__name__)
KINDS = ("requests", "predictions", "feedback", "dlq", "shadow")
Partition = tuple[str, int]
MAX_BACKLOG = 20_000


class MonitorLoop:
    """Consume, hand each message to the model's monitor, publish what it finds."""

    def __init__(
        self,
        consumer: Consumer,
        codec: Codec,
        publisher: EventPublisher,
        monitors: Monitors,
        ingest: Ingest,
        *,
        producer: str,
        replay_s: float,
        tick_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.consumer = consumer
        self.codec = codec
        self.publisher = publisher
        self.monitors = monitors
        self.ingest = ingest
        self.producer = producer
        self.replay_s = replay_s
        self.tick_s = tick_s
        self.clock = clock
        self.resume: dict[Partition, int] = {}
        self.catch_up: dict[Partition, int] = {}
        self.starts: dict[Partition, int] = {}
        self.merge = TimeOrderedMerge()
        self.paused: set[Partition] = set()
        self.handled: dict[Partition, int] = {}
        self.live = False
        self.dead_lettered = 0

    def follow_lifecycle(self, ends: dict[int, int]) -> None:
        """Go on reading the lifecycle from where its replay ended."""
        self.consumer.incremental_assign(
            [TopicPartition(LIFECYCLE_TOPIC, p, o) for p, o in ends.items()]
        )

    def subscribe_new_models(self) -> None:
        """Assign the data topics of models first seen, once they all exist."""
        if not self.monitors.unsubscribed:
            return
        existing = set(self.consumer.list_topics(timeout=10).topics)
        for model in list(self.monitors.unsubscribed):
            topics = [data_topic(model, kind) for kind in KINDS]
            if all(topic in existing for topic in topics):
                self._assign(topics)
                self.monitors.unsubscribed.remove(model)
                log.info("watching", model=model)

    def _offsets_at(self, partitions: list[TopicPartition], when_ms: int) -> list[int]:
        # One ListOffsets request for all partitions; -1 asks for the end, -2 the start.
        asked = [TopicPartition(tp.topic, tp.partition, when_ms) for tp in partitions]
        return [tp.offset for tp in self.consumer.offsets_for_times(asked, timeout=10)]

    def _assign(self, topics: list[str]) -> None:
        metadata = self.consumer.list_topics(timeout=10).topics
        partitions = [TopicPartition(t, p) for t in topics for p in sorted(metadata[t].partitions)]
        by_time = self._offsets_at(partitions, int((self.clock() - self.replay_s) * 1000))
        highs = self._offsets_at(partitions, -1)
        lows = self._offsets_at(partitions, -2)
        committed = self.consumer.committed(partitions, timeout=10)
        starts = []
        for tp, timed, high, low, done in zip(
            partitions, by_time, highs, lows, committed, strict=True
        ):
            key = (tp.topic, tp.partition)
            start = timed if timed >= 0 else high
            if done.offset >= 0:
                start = min(start, done.offset)
            start = max(start, low)
            self.resume[key] = done.offset if done.offset >= 0 else start
            self.catch_up[key] = high
            self.starts[key] = start
            starts.append(TopicPartition(*key, start))
        self.merge.track({key: (self.starts[key], self.catch_up[key]) for key in self.starts})
        self.consumer.incremental_assign(starts)

    def run(self, stop: threading.Event) -> None:
        """Until ``stop``: consume, and every tick close windows, publish, flush and commit."""
        next_tick = 0.0
        while not stop.is_set():
            for message in self.consumer.consume(500, timeout=0.2):
                if message.error() is not None:
                    continue
                if message.topic() == LIFECYCLE_TOPIC:
                    self._handle(message)
                else:
                    key = (message.topic() or "", message.partition() or 0)
                    self.merge.add(key, message.offset() or 0, message.timestamp()[1], message)
            for message in self.merge.drain():
                self._handle(message)
            self._throttle()
            if time.monotonic() >= next_tick:
                self.tick()
                next_tick = time.monotonic() + self.tick_s

    def tick(self) -> None:
        """Close due windows, publish, flush, commit; pick up new models."""
        self.subscribe_new_models()
        if not self.live and self._caught_up():
            self.live = True
            log.info("replay done: live", partitions=len(self.catch_up))
        now_s = self.clock() if self.live else None
        for model, monitor in self.monitors.models.items():
            for event in self.ingest.closed(model, monitor.close(now_s)):
                self.publisher.publish(event)
        self.publisher.flush()
        self._commit()

    def _caught_up(self) -> bool:
        return self.merge.caught_up

    def _throttle(self) -> None:
        # Bound the merge's memory: a partition far ahead of the others waits for them.
        for key in self.starts:
            backlog = self.merge.backlog(key)
            if backlog > MAX_BACKLOG and key not in self.paused:
                self.consumer.pause([TopicPartition(*key)])
                self.paused.add(key)
            elif backlog < MAX_BACKLOG // 10 and key in self.paused:
                self.consumer.resume([TopicPartition(*key)])
                self.paused.discard(key)

    def _commit(self) -> None:
        offsets = []
        for key, offset in self.handled.items():
            if offset > self.resume.get(key, -1):
                self.resume[key] = offset
                offsets.append(TopicPartition(*key, offset))
        if offsets:
            self.consumer.commit(offsets=offsets, asynchronous=False)

    def _handle(self, message: Message) -> None:
        envelope = from_confluent(message)
        if envelope.topic != LIFECYCLE_TOPIC:
            self.handled[(envelope.topic, envelope.partition)] = envelope.offset + 1
        try:
            event = self.codec.decode(envelope.value or b"", where=envelope.where)
        except CodecError as error:
            self._undecodable(envelope, error)
            return
        for out in self.ingest.event(envelope, event):
            self.publisher.publish(out)
        if envelope.topic != LIFECYCLE_TOPIC and self.ingest.pending_flush:
            self.publisher.flush()
            self.ingest.pending_flush = False

    def _undecodable(self, envelope: Envelope, error: Any) -> None:
        kind = envelope.topic.rpartition(".")[2]
        already = envelope.offset < self.resume.get((envelope.topic, envelope.partition), 0)
        # Requests are dead-lettered by inference, which owns them; a dead letter is never
        # dead-lettered again; one already written before a restart is not written twice.
        if kind in ("predictions", "feedback", "shadow") and not already:
            self.publisher.publish(
                dead_letter(envelope, type(error).__name__, str(error), producer=self.producer)
            )
            self.dead_lettered += 1
        log.warning("undecodable", where=envelope.where, error=str(error))

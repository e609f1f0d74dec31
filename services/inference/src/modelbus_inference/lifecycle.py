"""Following modelbus.lifecycle: replay it from the start, then handle what comes next."""

from __future__ import annotations

import threading
import time
import uuid

import structlog
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from modelbus.bus import LIFECYCLE_TOPIC, Dispatcher, EventPublisher
from modelbus.bus.envelope import Envelope
from modelbus.events import Codec, CodecError, GenericRecord
from modelbus_inference.handlers import replay
from modelbus_inference.serving import ModelManager

log = structlog.get_logger(__name__)


class LifecycleFollower:
    """Reads every partition of the lifecycle topic from offset 0 (no group commits)."""

    def __init__(
        self,
        bootstrap_servers: str,
        codec: Codec,
        models: ModelManager,
        dispatcher: Dispatcher,
        publisher: EventPublisher,
    ) -> None:
        self.codec = codec
        self.models = models
        self.dispatcher = dispatcher
        self.publisher = publisher
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap_servers,
                "group.id": f"modelbus-inference-lifecycle-{uuid.uuid4()}",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
            }
        )
        self._thread: threading.Thread | None = None

    def replay(self, timeout_s: float) -> int:
        """Fold the whole history up to today's end, then load and serve; returns events read."""
        metadata = self.consumer.list_topics(LIFECYCLE_TOPIC, timeout=timeout_s)
        topic = metadata.topics.get(LIFECYCLE_TOPIC)
        if topic is None or topic.error is not None:
            raise RuntimeError(f"{LIFECYCLE_TOPIC} does not exist; create the topics first")
        ends = {}
        for partition in topic.partitions:
            _, high = self.consumer.get_watermark_offsets(
                TopicPartition(LIFECYCLE_TOPIC, partition), timeout=timeout_s
            )
            ends[partition] = high
        self.consumer.assign(
            [TopicPartition(LIFECYCLE_TOPIC, p, OFFSET_BEGINNING) for p in topic.partitions]
        )
        pending = {p for p, end in ends.items() if end > 0}
        deadline = time.monotonic() + timeout_s
        read = 0
        idle_since = time.monotonic()
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"replaying {LIFECYCLE_TOPIC} took over {timeout_s}s")
            message = self.consumer.poll(0.2)
            if message is None or message.error():
                # Transaction markers take offsets but are never delivered: trust the position,
                # and an idle second, to say the end is reached.
                positions = self.consumer.position(
                    [TopicPartition(LIFECYCLE_TOPIC, p) for p in pending]
                )
                pending -= {tp.partition for tp in positions if tp.offset >= ends[tp.partition]}
                if time.monotonic() - idle_since > 1.0:
                    pending.clear()
                continue
            idle_since = time.monotonic()
            read += 1
            try:
                event = self.codec.decode(message.value() or b"", where="lifecycle replay")
                if not isinstance(event, GenericRecord):
                    replay(event, self.models)
            except (CodecError, ValueError) as error:
                log.warning("skipping an unreadable lifecycle event", error=str(error))
            partition, offset = int(message.partition() or 0), int(message.offset() or 0)
            if offset + 1 >= ends[partition]:
                pending.discard(partition)
        self._publish(self.models.reconcile())
        return read

    def start(self, stop: threading.Event) -> None:
        """Handle live lifecycle events on a background thread."""
        self._thread = threading.Thread(
            target=self._follow, args=(stop,), name="lifecycle", daemon=True
        )
        self._thread.start()

    def _follow(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                message = self.consumer.poll(0.2)
                if message is None or message.error():
                    continue
                outcome = self.dispatcher.dispatch(
                    Envelope(
                        topic=message.topic() or LIFECYCLE_TOPIC,
                        value=message.value(),
                        key=message.key(),
                        partition=int(message.partition() or 0),
                        offset=int(message.offset() or 0),
                    )
                )
                if outcome.dead_letter is not None:
                    log.warning("lifecycle event not handled", reason=outcome.dead_letter.reason)
                self._publish(outcome.events)
        finally:
            self.consumer.close()

    def _publish(self, events: list) -> None:
        for event in events:
            self.publisher.publish(event)
        if events:
            self.publisher.flush()

"""The lifecycle log as the registry's source of truth: what versions it already announced."""

from __future__ import annotations

import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from modelbus.bus import LIFECYCLE_TOPIC
from modelbus.bus.envelope import from_confluent
from modelbus.bus.reading import end_offsets, read_only_consumer
from modelbus.events import Codec, CodecError
from modelbus_registry.domain import AnnouncedVersions


class LoggedVersions(AnnouncedVersions):
    """AnnouncedVersions kept up to date by reading modelbus.lifecycle (committed messages only).

    The consumer is opened on the first ``catch_up`` and then only reads what is new, so
    catching up before each registration costs one watermark query when nothing changed.
    """

    def __init__(self, bootstrap_servers: str, codec: Codec, *, timeout_s: float = 30.0) -> None:
        super().__init__()
        self.bootstrap_servers = bootstrap_servers
        self.codec = codec
        self.timeout_s = timeout_s
        self._consumer: Consumer | None = None

    def catch_up(self) -> None:
        """Read the log from where this view stopped to its end as of now."""
        consumer = self._consumer
        if consumer is None:
            consumer = read_only_consumer(self.bootstrap_servers, purpose="registry-log")
            consumer.assign(
                [
                    TopicPartition(LIFECYCLE_TOPIC, partition, OFFSET_BEGINNING)
                    for partition in end_offsets(consumer, LIFECYCLE_TOPIC)
                ]
            )
            self._consumer = consumer
        ends = end_offsets(consumer, LIFECYCLE_TOPIC, timeout_s=self.timeout_s)
        deadline = time.monotonic() + self.timeout_s
        while True:
            positions = consumer.position(
                [TopicPartition(LIFECYCLE_TOPIC, partition) for partition in ends]
            )
            # Transaction markers take offsets but are never delivered: compare positions.
            if all(tp.offset >= ends[tp.partition] or ends[tp.partition] == 0 for tp in positions):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"reading {LIFECYCLE_TOPIC} to its end took over {self.timeout_s}s"
                )
            message = consumer.poll(0.2)
            if message is None or message.error():
                continue
            envelope = from_confluent(message)
            try:
                self.record(self.codec.decode(envelope.value or b"", where=envelope.where))
            except CodecError:
                continue  # the registry's consumer dead-letters it; here it announces nothing

    def close(self) -> None:
        """Release the consumer."""
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

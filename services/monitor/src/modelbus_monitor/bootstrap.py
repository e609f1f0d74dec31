"""Wires settings, codec, Kafka adapters and the model monitors into one monitor process."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import structlog
from confluent_kafka import Consumer, TopicPartition

from modelbus.bus import HEALTH_TOPIC, LIFECYCLE_TOPIC, Publisher, kafka_schema_store
from modelbus.bus.reading import end_offsets, read_only_consumer, read_ranges
from modelbus.bus.security import client_config
from modelbus.events import Codec, CodecError, build_codec
from modelbus.events.meta import now_utc, producer_id
from modelbus.service import inject
from modelbus.trust import load_signer, load_trusted
from modelbus_monitor.config import Settings
from modelbus_monitor.evidence import Gates
from modelbus_monitor.handlers import EVENT_HANDLERS
from modelbus_monitor.ingest import Ingest
from modelbus_monitor.monitors import Monitors
from modelbus_monitor.stream import MonitorLoop

log = structlog.get_logger(__name__)
OUTPUT_SCHEMAS = (
    "modelbus.events.DriftDetected",
    "modelbus.events.ModelHealth",
    "modelbus.events.DeadLetter",
)


@dataclass
class Monitor:
    """The monitor process: replays what the logs already hold, then streams."""

    settings: Settings
    codec: Codec
    publisher: Publisher
    monitors: Monitors
    ingest: Ingest
    loop: MonitorLoop

    def replay_logs(self, timeout_s: float = 60.0) -> int:
        """Fold the lifecycle (models, profiles, past alerts) and recent health windows."""
        bootstrap = self.settings.kafka.bootstrap_servers
        reader = read_only_consumer(bootstrap, purpose="monitor-replay")
        try:
            ends = end_offsets(reader, LIFECYCLE_TOPIC)
            read = self._fold(
                read_ranges(
                    reader,
                    LIFECYCLE_TOPIC,
                    {p: (0, e) for p, e in ends.items()},
                    timeout_s=timeout_s,
                )
            )
            since_ms = int((time.time() - self.settings.replay_s - 3600) * 1000)
            health_ends = end_offsets(reader, HEALTH_TOPIC)
            starts = reader.offsets_for_times(
                [TopicPartition(HEALTH_TOPIC, p, since_ms) for p in health_ends], timeout=10
            )
            ranges = {
                tp.partition: (
                    tp.offset if tp.offset >= 0 else health_ends[tp.partition],
                    health_ends[tp.partition],
                )
                for tp in starts
            }
            read += self._fold(read_ranges(reader, HEALTH_TOPIC, ranges, timeout_s=timeout_s))
        finally:
            reader.close()
        self.loop.follow_lifecycle(ends)
        return read

    def _fold(self, envelopes) -> int:
        read = 0
        for envelope in envelopes:
            read += 1
            try:
                self.ingest.event(
                    envelope, self.codec.decode(envelope.value or b"", where=envelope.where)
                )
            except CodecError as error:
                log.warning("skipping an unreadable event", where=envelope.where, error=str(error))
        return read

    def run(self, stop: threading.Event) -> None:
        """Stream until ``stop``, then flush and commit what was handled."""
        try:
            self.loop.run(stop)
            self.loop.tick()
        finally:
            self.loop.consumer.close()


def bootstrap(settings: Settings) -> Monitor:
    """Build a monitor from settings."""
    kafka = settings.kafka
    codec = build_codec(
        kafka_schema_store(kafka.bootstrap_servers), models=tuple(settings.contracts)
    )
    producer = producer_id("monitor")
    publisher = Publisher(
        kafka, codec, client_id=f"{settings.group_id}-publisher", signer=load_signer("monitor")
    )
    for name in OUTPUT_SCHEMAS:
        known = codec.store.reader(name)
        assert known is not None, name
        publisher.ensure_schema_published(known)
    gates = Gates(
        adwin_delta=settings.adwin_delta,
        adwin_clock=settings.adwin_clock,
        error_adwin_delta=settings.error_adwin_delta,
        min_samples=settings.min_samples,
        alpha=settings.alpha,
        min_effect_sigma=settings.min_effect_sigma,
        min_score_shift=settings.min_score_shift,
        min_error_increase=settings.min_error_increase,
        min_category_psi=settings.min_category_psi,
        category_chunk=settings.category_chunk,
        history=settings.history,
    )
    monitors = Monitors(
        gates,
        join_window_s=settings.join_window_s,
        window_s=settings.window_s,
        lateness_s=settings.lateness_s,
        cooldown_s=settings.cooldown_s,
        rearm_after=settings.rearm_after,
        pattern=settings.models_pattern,
    )
    handlers = inject(EVENT_HANDLERS, {"monitors": monitors})
    trusted = load_trusted()  # what is served is learnt only from correctly signed events
    ingest = Ingest(monitors, handlers, producer=producer, now=now_utc, trusted=trusted)  # type: ignore[arg-type]
    consumer = Consumer(
        {
            **client_config(kafka.bootstrap_servers),
            "group.id": settings.group_id,
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
        }
    )
    loop = MonitorLoop(
        consumer, codec, publisher, monitors, ingest,
        producer=producer, replay_s=settings.replay_s, tick_s=settings.idle_close_s,
    )  # fmt: skip
    return Monitor(settings, codec, publisher, monitors, ingest, loop)

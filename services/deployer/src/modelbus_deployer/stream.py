"""The deployer on Kafka: one active instance, state by replay, decisions in transactions.

The instance holding the lifecycle partition in the consumer group acts; the others wait in
the group and take over within a session timeout when it dies. On taking the partition it
folds the whole log from offset 0 (``decide`` on every event, publishing only what the log
lacks), catches up on the health windows of running rollouts, and goes live. Each trigger's
decisions are written in one Kafka transaction under a fixed transactional id, so a deposed
instance is fenced and the log never holds half of a decision.

Only correctly signed inputs count (``SIGNED_BY``): an unsigned or wrongly signed event is
skipped at replay and, live, dead-lettered with the reason (in its own transaction).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import structlog
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from modelbus.bus import HEALTH_TOPIC, LIFECYCLE_TOPIC, Publisher
from modelbus.bus.dispatch import dead_letter
from modelbus.bus.envelope import Envelope, from_confluent
from modelbus.bus.reading import end_offsets
from modelbus.bus.topics import dlq_topic_for
from modelbus.events import Codec, CodecError, GenericRecord
from modelbus.events import types as t
from modelbus.events.meta import now_utc
from modelbus.trust import TrustedKeys, check_event
from modelbus_deployer.domain import Deployer
from modelbus_deployer.handlers import handle

log = structlog.get_logger(__name__)
NewDeployer = Callable[[], Deployer]
NewPublisher = Callable[[], Publisher]


class DeployerLoop:
    """Consume lifecycle and health, decide, publish; active only while holding the log."""

    def __init__(
        self,
        lifecycle: Consumer,
        health: Consumer,
        codec: Codec,
        new_deployer: NewDeployer,
        new_publisher: NewPublisher,
        *,
        tick_s: float,
        trusted: TrustedKeys,
        producer: str,
        watches: Callable[[str], bool] = lambda model: True,
    ) -> None:
        self.trusted = trusted
        self.producer = producer
        self.refused = 0
        self.watches = watches
        self.lifecycle = lifecycle
        self.health = health
        self.codec = codec
        self.new_deployer = new_deployer
        self.new_publisher = new_publisher
        self.tick_s = tick_s
        self.deployer: Deployer | None = None
        self.publisher: Publisher | None = None
        self.replay_end: int | None = None
        self.replayed: list[Any] = []
        self.on_log: set[str] = set()
        self.decisions = 0

    @property
    def live(self) -> bool:
        """Holding the log and done replaying it."""
        return self.deployer is not None and self.replay_end is None

    def run(self, stop: threading.Event) -> None:
        """Until ``stop``: lifecycle, health, timers."""
        self.lifecycle.subscribe(
            [LIFECYCLE_TOPIC], on_assign=self._assigned, on_revoke=self._revoked
        )
        next_tick = time.monotonic()
        try:
            while not stop.is_set():
                message = self.lifecycle.poll(0.1)
                if message is not None and not message.error():
                    self._lifecycle_message(message)
                elif self.replay_end is not None and self.deployer is not None:
                    self._replayed_past_markers()
                if self.live:
                    self._health_messages()
                    if time.monotonic() >= next_tick:
                        next_tick = time.monotonic() + self.tick_s
                        self._tick()
        finally:
            self.lifecycle.close()
            self.health.close()

    # -- activation -----------------------------------------------------------------------

    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if not partitions:
            return
        self.deployer = self.new_deployer()
        self.replay_end = end_offsets(consumer, LIFECYCLE_TOPIC).get(0, 0)
        self.replayed, self.on_log = [], set()
        consumer.assign([TopicPartition(LIFECYCLE_TOPIC, p.partition, OFFSET_BEGINNING)
                         for p in partitions])  # fmt: skip
        log.info("holding the lifecycle log: replaying it", end=self.replay_end)
        if self.replay_end == 0:
            self._go_live()

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if partitions:
            log.warning("lost the lifecycle log: passive until it comes back")
            self.deployer, self.publisher, self.replay_end = None, None, None

    def _go_live(self) -> None:
        assert self.deployer is not None
        self.publisher = self.new_publisher()
        self.publisher.producer.init_transactions(30)
        missing = [d for d in self.replayed if d.meta.event_id not in self.on_log]
        missing += self._catch_up_health()
        self.replay_end, self.replayed = None, []
        self._publish(missing)
        log.info("live", models=sorted(self.deployer.models), published_after_replay=len(missing))

    def _catch_up_health(self) -> list[Any]:
        """Health windows of running rollouts since their step began; then follow live."""
        assert self.deployer is not None
        starts = [
            state.rollout.step_started_at
            for state in self.deployer.models.values()
            if state.rollout is not None and state.rollout.step_started_at is not None
        ]
        partitions = sorted(end_offsets(self.health, HEALTH_TOPIC))
        if not starts:
            ends = end_offsets(self.health, HEALTH_TOPIC)
            self.health.assign([TopicPartition(HEALTH_TOPIC, p, ends[p]) for p in partitions])
            return []
        since_ms = int(min(starts).timestamp() * 1000)
        found = self.health.offsets_for_times(
            [TopicPartition(HEALTH_TOPIC, p, since_ms) for p in partitions], timeout=10
        )
        ends = end_offsets(self.health, HEALTH_TOPIC)
        starting = [
            TopicPartition(HEALTH_TOPIC, tp.partition, tp.offset if tp.offset >= 0 else ends[p])
            for p, tp in zip(partitions, found, strict=True)
        ]
        self.health.assign(starting)
        decided: list[Any] = []
        pending = {p for p in partitions if ends[p] > 0}
        deadline = time.monotonic() + 30
        while pending and time.monotonic() < deadline:
            for message in self.health.consume(500, 0.2):
                if message.error():
                    continue
                event = self._decode(message, live=False)
                if isinstance(event, t.ModelHealth):
                    decided += handle(event, self.deployer, now_utc())
            positions = self.health.position([TopicPartition(HEALTH_TOPIC, p) for p in pending])
            pending -= {tp.partition for tp in positions if tp.offset >= ends[tp.partition]}
        return decided

    # -- handling ---------------------------------------------------------------------------

    def _decode(self, message: Any, *, live: bool) -> Any:
        """The event, or None when undecodable, unknown, about a model not watched, or not
        signed by a role allowed to publish it (dead-lettered when ``live``)."""
        envelope = from_confluent(message)
        if envelope.key is not None and not self.watches(envelope.key.decode(errors="replace")):
            return None
        try:
            event = self.codec.decode(envelope.value or b"", where=envelope.where)
        except CodecError as error:
            log.warning("skipping an undecodable event", where=envelope.where, error=error.cause)
            return None
        if isinstance(event, GenericRecord) or not self.watches(getattr(event, "model", "")):
            return None
        value = envelope.value or b""
        refused = check_event(
            event.SCHEMA_NAME, envelope.topic, value, envelope.headers, self.trusted
        )
        if refused is not None:
            log.warning("refused an event", where=envelope.where, reason=refused.reason, live=live)
            if live:
                self._refuse(dead_letter(envelope, refused.error_type, refused.reason,
                                         producer=self.producer), envelope)  # fmt: skip
            return None
        return event

    def _lifecycle_message(self, message: Any) -> None:
        if self.deployer is None:
            return
        event = self._decode(message, live=self.replay_end is None)
        if self.replay_end is not None:
            if event is not None and hasattr(event, "meta"):
                self.on_log.add(event.meta.event_id)
                self.replayed += handle(event, self.deployer, event.meta.occurred_at)
            if (message.offset() or 0) + 1 >= self.replay_end:
                self._go_live()
            return
        if event is not None and hasattr(event, "meta"):
            self._publish(handle(event, self.deployer, now_utc()))

    def _replayed_past_markers(self) -> None:
        """Transaction markers take offsets but deliver nothing: compare the position."""
        (position,) = self.lifecycle.position([TopicPartition(LIFECYCLE_TOPIC, 0)])
        if self.replay_end is not None and position.offset >= self.replay_end:
            self._go_live()

    def _health_messages(self) -> None:
        assert self.deployer is not None
        for message in self.health.consume(200, 0):
            if message.error():
                continue
            event = self._decode(message, live=True)
            if isinstance(event, t.ModelHealth):
                self._publish(handle(event, self.deployer, now_utc()))

    def _tick(self) -> None:
        assert self.deployer is not None
        now = now_utc()
        for model in list(self.deployer.models):
            self._publish(self.deployer.tick(model, now=now))

    def _refuse(self, dead: t.DeadLetter, envelope: Envelope) -> None:
        if self._publish([], dead=(dead, dlq_topic_for(envelope.topic), envelope.key or b"")):
            self.refused += 1

    def _publish(
        self, decisions: list[Any], *, dead: tuple[t.DeadLetter, str, bytes] | None = None
    ) -> bool:
        if (not decisions and dead is None) or self.publisher is None:
            return False
        producer = self.publisher.producer
        try:
            producer.begin_transaction()
            for decision in decisions:
                self.publisher.publish(decision)
            if dead is not None:
                letter, topic, key = dead
                self.publisher.publish(letter, topic=topic, key=key)
            producer.commit_transaction(30)
        except Exception as error:
            # Fenced (another deployer took over) or the broker failed us: this instance's
            # view may be stale; drop it and rebuild from the log when the partition returns.
            # A fenced producer may surface as KafkaException, PublishError (a delivery
            # failed) or, from inside a flush, SystemError: each means the same here.
            log.error("decisions not written; re-reading the log", error=repr(error))
            with contextlib.suppress(KafkaException):  # fenced: nothing of ours to abort
                producer.abort_transaction(10)
            self.deployer, self.replay_end = None, None
            self.lifecycle.unsubscribe()
            self.lifecycle.subscribe(
                [LIFECYCLE_TOPIC], on_assign=self._assigned, on_revoke=self._revoked
            )
            return False
        self.decisions += len(decisions)
        for decision in decisions:
            log.info("decided", kind=type(decision).__name__, model=decision.model,
                     id=decision.meta.event_id, at=_iso(decision.meta.occurred_at))  # fmt: skip
        return True


def _iso(moment: datetime) -> str:
    return moment.isoformat()

"""The consumer loop (confluent-kafka): decode, hand to handlers, publish, dead-letter, commit."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import structlog
from confluent_kafka import Consumer, KafkaException

from modelbus.bus.dispatch import Dispatcher
from modelbus.bus.envelope import from_confluent
from modelbus.bus.publisher import Publisher
from modelbus.bus.security import client_config
from modelbus.bus.topics import dlq_topic_for
from modelbus.config import KafkaSettings

log = structlog.get_logger(__name__)


class ConsumerLoop:
    """At-least-once: offsets commit only after outputs and dead letters are on the broker.

    Handlers see decoded events only. A message that cannot be decoded or handled becomes
    one DeadLetter on its model's dlq topic, and the loop goes on.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        *,
        group_id: str,
        topics: list[str],
        dispatcher: Dispatcher,
        publisher: Publisher,
        batch_size: int = 500,
        from_beginning: bool = True,
        extra_config: dict[str, object] | None = None,
    ) -> None:
        self.topics = topics
        self.dispatcher = dispatcher
        self.publisher = publisher
        self.batch_size = batch_size
        self.consumer = Consumer(
            {
                **client_config(settings.bootstrap_servers),
                "group.id": group_id,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest" if from_beginning else "latest",
                "isolation.level": "read_committed",
                **(extra_config or {}),
            }
        )
        self.consumer.subscribe(topics)
        self.processed = 0
        self.dead_lettered = 0

    def poll_once(self, timeout_s: float = 0.5) -> int:
        """Process one batch; returns how many messages it held."""
        messages = self.consumer.consume(self.batch_size, timeout_s)
        if not messages:
            return 0
        for message in messages:
            error = message.error()
            if error is not None:
                if error.fatal():
                    raise KafkaException(error)
                log.warning("consumer error", error=error.str())
                continue
            envelope = from_confluent(message)
            outcome = self.dispatcher.dispatch(envelope)
            for event in outcome.events:
                self.publisher.publish(event)
            if outcome.dead_letter is not None:
                self.publisher.publish(
                    outcome.dead_letter,
                    topic=dlq_topic_for(envelope.topic),
                    key=envelope.key or b"",
                )
                self.dead_lettered += 1
            self.processed += 1
        self.publisher.flush()
        self.consumer.commit(asynchronous=False)
        return len(messages)

    def run(
        self,
        stop: threading.Event | None = None,
        *,
        until: Callable[[], bool] | None = None,
        idle_timeout_s: float | None = None,
    ) -> None:
        """Loop until ``stop`` is set, ``until()`` holds, or idle for ``idle_timeout_s``."""
        stop = stop or threading.Event()
        last_message = time.monotonic()
        try:
            while not stop.is_set() and not (until and until()):
                if self.poll_once():
                    last_message = time.monotonic()
                elif (
                    idle_timeout_s is not None and time.monotonic() - last_message > idle_timeout_s
                ):
                    break
        finally:
            self.close()

    def close(self) -> None:
        """Leave the group cleanly."""
        self.consumer.close()

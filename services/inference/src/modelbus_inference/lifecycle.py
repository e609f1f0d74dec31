"""Following modelbus.lifecycle: replay it from the start, then handle what comes next.

Only decisions signed by their role count: at replay an unsigned or wrongly signed one is
skipped; live, it is also dead-lettered with the reason, once: every worker of the model reads
the whole log and refuses it, and the worker in slot 0 writes the dead letter (the others log).
"""

from __future__ import annotations

import threading

import structlog

from modelbus.bus import LIFECYCLE_TOPIC, Dispatcher, EventPublisher
from modelbus.bus.envelope import Envelope, from_confluent
from modelbus.bus.reading import read_only_consumer
from modelbus.bus.reading import replay as replay_topic
from modelbus.bus.topics import dlq_topic_for
from modelbus.events import Codec, CodecError, GenericRecord
from modelbus.trust import SIGNATURE_ERRORS, TrustedKeys, check_event
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
        trusted: TrustedKeys,
        *,
        writes_dead_letters: bool = True,
    ) -> None:
        self.trusted = trusted
        self.writes_dead_letters = writes_dead_letters
        self.codec = codec
        self.models = models
        self.dispatcher = dispatcher
        self.publisher = publisher
        self.consumer = read_only_consumer(bootstrap_servers, purpose="inference-lifecycle")
        self._thread: threading.Thread | None = None

    def replay(self, timeout_s: float) -> int:
        """Fold the whole history up to today's end, then load and serve; returns events read."""
        read = 0
        for envelope in replay_topic(self.consumer, LIFECYCLE_TOPIC, timeout_s=timeout_s):
            read += 1
            try:
                event = self.codec.decode(envelope.value or b"", where=envelope.where)
                if not isinstance(event, GenericRecord) and self._trusted(event, envelope):
                    replay(event, self.models)
            except (CodecError, ValueError) as error:
                log.warning("skipping an unreadable lifecycle event", error=str(error))
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
                envelope = from_confluent(message)
                outcome = self.dispatcher.dispatch(envelope)
                refused = outcome.dead_letter
                if refused is not None:
                    log.warning("lifecycle event not handled", reason=refused.reason)
                    if self._reports(refused.error_type, envelope):
                        topic = dlq_topic_for(envelope.topic)
                        self.publisher.publish(refused, topic=topic, key=envelope.key or b"")
                        self.publisher.flush()
                self._publish(outcome.events)
        finally:
            self.consumer.close()

    def _reports(self, error_type: str, envelope: Envelope) -> bool:
        """Whether this worker dead-letters a refused decision: a signature refusal about its
        model, and only in slot 0, so N workers write one dead letter, not N."""
        return self.writes_dead_letters and error_type in SIGNATURE_ERRORS and self._ours(envelope)

    def _ours(self, envelope: Envelope) -> bool:
        return envelope.key == self.models.model.encode()

    def _trusted(self, event: object, envelope: Envelope) -> bool:
        name = getattr(event, "SCHEMA_NAME", "")
        value = envelope.value or b""
        rejection = check_event(name, envelope.topic, value, envelope.headers, self.trusted)
        if rejection is not None and self._ours(envelope):
            log.warning(
                "skipping a decision at replay", where=envelope.where, reason=rejection.reason
            )
        return rejection is None

    def _publish(self, events: list) -> None:
        for event in events:
            self.publisher.publish(event)
        if events:
            self.publisher.flush()

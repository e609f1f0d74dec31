"""From decoded events to the model monitors, and from their findings to events to publish."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import structlog

from modelbus.bus import Envelope
from modelbus.bus.topics import model_of_topic
from modelbus.events import types as t
from modelbus.trust import TrustedKeys, check_event
from modelbus_monitor.domain import Alert
from modelbus_monitor.evidence import Where
from modelbus_monitor.handlers import drift_detected, model_health, seconds
from modelbus_monitor.health import HealthSummary
from modelbus_monitor.joins import ResultFacts
from modelbus_monitor.monitors import Monitors

# The data plane arrives as decoded records routed by topic, not through a handler table.
CONSUMES = (t.PredictionRequest, t.PredictionResult, t.Feedback)

Handlers = dict[type, list[Callable[[Any], list]]]
log = structlog.get_logger(__name__)


class Ingest:
    """Routes one decoded event by its topic; returns DriftDetected events to publish."""

    def __init__(
        self,
        monitors: Monitors,
        lifecycle_handlers: Handlers,
        *,
        producer: str,
        now: Callable[[], datetime],
        trusted: TrustedKeys | None = None,
    ) -> None:
        self.trusted = trusted
        self.refused = 0
        self.monitors = monitors
        self.lifecycle_handlers = lifecycle_handlers
        self.producer = producer
        self.now = now
        self.pending_flush = False
        self.alerts = 0

    def event(self, envelope: Envelope, event: Any) -> list[Any]:
        """Handle one event read at ``envelope``."""
        model = model_of_topic(envelope.topic)
        if model is None:
            handlers = self.lifecycle_handlers.get(type(event), [])
            if handlers and not self._signed(envelope, event):
                return []
            for handler in handlers:
                handler(event)
            return []
        monitor = self.monitors.models.get(model)
        if monitor is None:
            return []
        alerts: list[Alert] = []
        if isinstance(event, t.PredictionRequest):
            where = Where(seconds(event.sent_at), envelope.partition, envelope.offset)
            alerts = monitor.request(event.request_id, event.features, where)
        elif isinstance(event, t.PredictionResult):
            facts = ResultFacts(
                version=event.version,
                variant=event.variant,
                scores=tuple(event.scores),
                predicted=event.label,
                at_s=seconds(event.meta.occurred_at),
                latency_ms=event.timings.total_ms,
            )
            alerts = monitor.result(event.request_id, facts)
        elif isinstance(event, t.Feedback):
            alerts = monitor.label(event.request_id, event.label, seconds(event.observed_at))
        elif isinstance(event, t.DeadLetter):
            monitor.dead_letter(event.model_version, seconds(event.meta.occurred_at))
        if not alerts:
            return []
        self.pending_flush = True
        self.alerts += len(alerts)
        return [drift_detected(a, producer=self.producer, now=self.now()) for a in alerts]

    def _signed(self, envelope: Envelope, event: Any) -> bool:
        """Whether ``event`` may steer the monitor: signed by a role allowed to publish it.

        A refused one is skipped, not dead-lettered: the monitor re-reads the lifecycle log at
        every start, and the deployer and trainer dead-letter it already.
        """
        if self.trusted is None:
            return True
        value = envelope.value or b""
        refused = check_event(event.SCHEMA_NAME, envelope.topic, value, envelope.headers,
                              self.trusted)  # fmt: skip
        if refused is None:
            return True
        self.refused += 1
        log.warning("skipping an event", where=envelope.where, reason=refused.reason)
        return False

    def closed(self, model: str, summaries: Sequence[HealthSummary]) -> list[t.ModelHealth]:
        """ModelHealth events of the windows just closed."""
        return [model_health(model, s, producer=self.producer, now=self.now()) for s in summaries]

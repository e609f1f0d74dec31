"""Plain functions from what the monitor saw to the events it publishes, and lifecycle folds.

Event ids are deterministic (uuid5 of the episode or the window), so an event published
twice by a restarted monitor carries the same id and consumers drop the copy.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from modelbus.events import types as t
from modelbus_monitor.domain import Alert
from modelbus_monitor.health import HealthSummary
from modelbus_monitor.monitors import Monitors

_IDS = uuid.UUID("6d6f6e69-746f-7200-0000-6d6f64656c62")


def at(seconds: float) -> datetime:
    """Event time in seconds as the millisecond UTC datetime Avro holds."""
    return datetime.fromtimestamp(round(seconds * 1000) / 1000, UTC)


def seconds(moment: datetime) -> float:
    """A datetime as event-time seconds."""
    return moment.timestamp()


def _meta(key: str, producer: str, occurred_at: datetime) -> t.EventMeta:
    event_id = str(uuid.uuid5(_IDS, key))
    # A drift or a window starts a correlation chain of its own: it has no cause event.
    return t.EventMeta(
        event_id=event_id,
        occurred_at=occurred_at,
        producer=producer,
        correlation_id=event_id,
        causation_id=None,
    )


def drift_detected(alert: Alert, *, producer: str, now: datetime) -> t.DriftDetected:
    """The DriftDetected of a new episode."""
    finding = alert.finding
    evidence = [
        t.DriftEvidence(
            feature=e.feature,
            detector=e.detector,
            statistic=e.statistic,
            threshold=e.threshold,
            window_start=at(e.start_s),
            window_end=at(e.end_s),
            sample_size=e.sample_size,
            p_value=e.p_value,
            effect_size=e.effect_size,
            kind=e.kind,
        )
        for e in finding.evidence
    ]
    return t.DriftDetected(
        meta=_meta(f"drift/{alert.episode_id}", producer, now),
        model=alert.model,
        version=alert.version,
        kind=finding.kind,
        evidence=evidence,
        variant=alert.variant,
        onset_at=at(finding.onset_at_s),
        onset_offsets=[t.PartitionOffset(partition=p, offset=o) for p, o in finding.onset_offsets],
        episode_id=alert.episode_id,
    )


def model_health(
    model: str, summary: HealthSummary, *, producer: str, now: datetime
) -> t.ModelHealth:
    """The ModelHealth of one closed window."""
    key = f"health/{model}/{summary.version}/{summary.variant}/{summary.start_s}"
    return t.ModelHealth(
        meta=_meta(key, producer, now),
        model=model,
        version=summary.version,
        variant=summary.variant,
        window_start=at(summary.start_s),
        window_end=at(summary.end_s),
        requests=summary.requests,
        errors=summary.dead_letters,
        latency_p50_ms=summary.latency_p50_ms,
        latency_p99_ms=summary.latency_p99_ms,
        mean_score=summary.mean_score,
        accuracy=summary.accuracy,
        labelled=summary.labelled,
        drift_alarms=summary.drift_alarms,
        dead_letters=summary.dead_letters,
        correct=summary.correct,
        log_loss=summary.log_loss,
        latency_max_ms=summary.latency_max_ms,
        score_histogram=list(summary.score_histogram),
        score_quantiles=list(summary.score_quantiles),
        out_of_profile=summary.out_of_profile,
    )


def model_registered(event: t.ModelRegistered, monitors: Monitors) -> list:
    """A model or version to watch: load its training profile."""
    if not monitors.watches(event.model):
        return []
    monitors.register(event.model, event.version, event.artifact_uri, event.artifact_sha256)
    return []


def drift_seen(event: t.DriftDetected, monitors: Monitors) -> list:
    """An alert already on the log: the same episode is never announced again."""
    if not monitors.watches(event.model):
        return []
    detected_at = max((seconds(e.window_end) for e in event.evidence), default=None)
    if event.version is not None and detected_at is not None:
        monitor = monitors.get_or_create(event.model)
        monitor.remember_alert(event.version, event.variant, event.kind, detected_at)
    return []


def health_seen(event: t.ModelHealth, monitors: Monitors) -> list:
    """A window already on ``modelbus.health``: never published again."""
    if not monitors.watches(event.model):
        return []
    monitor = monitors.get_or_create(event.model)
    monitor.health.published(event.version, event.variant, seconds(event.window_end))
    return []


EVENT_HANDLERS: dict[type, list[Callable[..., list]]] = {
    t.ModelRegistered: [model_registered],
    t.DriftDetected: [drift_seen],
    t.ModelHealth: [health_seen],
}

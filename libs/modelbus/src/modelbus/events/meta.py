"""EventMeta helpers: ids, timestamps and the causality chain."""

from __future__ import annotations

import os
import socket
import uuid
from datetime import UTC, datetime
from typing import Any

from modelbus.events import types as t

LIFECYCLE_EVENTS: tuple[type[Any], ...] = (
    t.TrainingRequested,
    t.TrainingStarted,
    t.TrainingFailed,
    t.ModelTrained,
    t.RegistrationFailed,
    t.ModelRegistered,
    t.RolloutStarted,
    t.TrafficShifted,
    t.CanaryEvaluated,
    t.ModelPromoted,
    t.ModelRolledBack,
    t.RollbackRequested,
    t.PromotionRequested,
    t.ModelLoaded,
    t.ModelLoadFailed,
    t.DriftDetected,
)
"""Events on ``modelbus.lifecycle``, keyed by model."""

DATA_PLANE_EVENTS: tuple[type[Any], ...] = (
    t.PredictionRequest,
    t.PredictionResult,
    t.Feedback,
    t.DeadLetter,
    t.ModelHealth,
)


def producer_id(service: str) -> str:
    """Who writes: 'trainer@host:pid'."""
    return f"{service}@{socket.gethostname()}:{os.getpid()}"


def now_utc() -> datetime:
    """Now, as the millisecond-precision UTC datetime Avro's timestamp-millis holds."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def new_meta(
    producer: str, *, cause: Any | None = None, correlation_id: str | None = None
) -> t.EventMeta:
    """Meta for a new event; ``cause`` (an event) sets causation and carries its correlation."""
    event_id = str(uuid.uuid4())
    cause_meta = getattr(cause, "meta", None)
    return t.EventMeta(
        event_id=event_id,
        occurred_at=now_utc(),
        producer=producer,
        correlation_id=correlation_id
        or (cause_meta.correlation_id if cause_meta is not None else event_id),
        causation_id=cause_meta.event_id if cause_meta is not None else None,
    )

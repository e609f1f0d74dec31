"""Topic names, their configs, where each event goes, and creating them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from confluent_kafka.admin import AdminClient, NewTopic

from modelbus.events import types as t
from modelbus.events.meta import LIFECYCLE_EVENTS

LIFECYCLE_TOPIC = "modelbus.lifecycle"
SCHEMAS_TOPIC = "modelbus.schemas"
HEALTH_TOPIC = "modelbus.health"
SHARED_DLQ_TOPIC = "modelbus.dlq"
"""Dead letters from topics that belong to no single model (lifecycle, health)."""

_DATA_KINDS = ("requests", "predictions", "feedback", "dlq")


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """A topic and the configs it is created with."""

    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)


def data_topic(model: str, kind: str) -> str:
    """``modelbus.<model>.<kind>`` for kind in requests, predictions, feedback, dlq."""
    if kind not in _DATA_KINDS:
        raise ValueError(f"unknown data topic kind {kind!r}; expected one of {_DATA_KINDS}")
    return f"modelbus.{model}.{kind}"


def model_of_topic(topic: str) -> str | None:
    """The model a data topic belongs to, or None for shared topics."""
    parts = topic.split(".")
    if len(parts) == 3 and parts[0] == "modelbus" and parts[2] in _DATA_KINDS:
        return parts[1]
    return None


def dlq_topic_for(source_topic: str) -> str:
    """Where a bad message from ``source_topic`` is dead-lettered."""
    model = model_of_topic(source_topic)
    return data_topic(model, "dlq") if model else SHARED_DLQ_TOPIC


def route(event: Any) -> tuple[str, str]:
    """(topic, key) an event is published to."""
    if isinstance(event, LIFECYCLE_EVENTS):
        # Keyed by model so one partition holds one model's history in order.
        return LIFECYCLE_TOPIC, event.model
    if isinstance(event, t.PredictionRequest):
        return data_topic(event.model, "requests"), event.request_id
    if isinstance(event, t.PredictionResult):
        return data_topic(event.model, "predictions"), event.request_id
    if isinstance(event, t.Feedback):
        return data_topic(event.model, "feedback"), event.request_id
    if isinstance(event, t.ModelHealth):
        return HEALTH_TOPIC, event.model
    if isinstance(event, t.DeadLetter):
        topic = data_topic(event.model, "dlq") if event.model else SHARED_DLQ_TOPIC
        return topic, event.model
    raise TypeError(f"no topic for {type(event).__name__}")


def topic_specs(models: list[str], *, data_partitions: int, retention_ms: int) -> list[TopicSpec]:
    """Every topic a deployment serving ``models`` needs."""
    retention = {"retention.ms": str(retention_ms)}
    specs = [
        # The audit log: kept forever and never compacted.
        TopicSpec(LIFECYCLE_TOPIC, 1, {"retention.ms": "-1", "cleanup.policy": "delete"}),
        # One record per fingerprint is all a reader needs, forever.
        TopicSpec(SCHEMAS_TOPIC, 1, {"cleanup.policy": "compact", "retention.ms": "-1"}),
        TopicSpec(HEALTH_TOPIC, 1, retention),
        TopicSpec(SHARED_DLQ_TOPIC, 1, retention),
    ]
    for model in models:
        specs += [
            TopicSpec(data_topic(model, kind), data_partitions, retention) for kind in _DATA_KINDS
        ]
    return specs


def ensure_topics(
    bootstrap_servers: str, specs: list[TopicSpec], timeout_s: float = 30.0
) -> list[str]:
    """Create the topics that do not exist yet; returns the names created."""
    admin = AdminClient({"bootstrap.servers": bootstrap_servers})
    existing = set(admin.list_topics(timeout=timeout_s).topics)
    missing = [spec for spec in specs if spec.name not in existing]
    if not missing:
        return []
    futures = admin.create_topics(
        [NewTopic(spec.name, spec.partitions, 1, config=spec.config) for spec in missing],
        operation_timeout=timeout_s,
    )
    created = []
    for name, future in futures.items():
        try:
            future.result()
            created.append(name)
        except Exception as error:
            if "TOPIC_ALREADY_EXISTS" not in str(error):
                raise
    return created

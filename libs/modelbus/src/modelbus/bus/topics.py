"""Topic names, their configs, where each event goes, and creating them."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka.admin import AdminClient, NewTopic

from modelbus.bus.security import client_config
from modelbus.config import KafkaSettings
from modelbus.events import types as t
from modelbus.events.meta import LIFECYCLE_EVENTS

LIFECYCLE_TOPIC = "modelbus.lifecycle"
SCHEMAS_TOPIC = "modelbus.schemas"
HEALTH_TOPIC = "modelbus.health"
SHARED_DLQ_TOPIC = "modelbus.dlq"
"""Dead letters from topics that belong to no single model (lifecycle, health)."""

_DATA_KINDS = ("requests", "predictions", "feedback", "dlq", "shadow")


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """A topic and the configs it is created with."""

    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)
    critical: bool = False
    """The audit log and the schemas: never fewer copies than the cluster's default."""


@dataclass(frozen=True, slots=True)
class Durability:
    """How many copies of each partition, and how many must acknowledge a write."""

    replication_factor: int
    min_insync_replicas: int


class DurabilityError(ValueError):
    """The asked durability cannot be had on this cluster."""


def plan_durability(
    brokers: int,
    *,
    replication_factor: int | None = None,
    min_insync_replicas: int | None = None,
    critical: bool = False,
) -> Durability:
    """3 copies / 2 in sync on a cluster of three or more brokers, 1/1 below; overridable.

    A critical topic never gets fewer copies than that default, whatever the override.

    >>> plan_durability(1)
    Durability(replication_factor=1, min_insync_replicas=1)
    >>> plan_durability(5)
    Durability(replication_factor=3, min_insync_replicas=2)
    >>> plan_durability(3, replication_factor=1)
    Durability(replication_factor=1, min_insync_replicas=1)
    >>> plan_durability(3, replication_factor=1, critical=True)
    Durability(replication_factor=3, min_insync_replicas=2)
    """
    default = Durability(3, 2) if brokers >= 3 else Durability(1, 1)
    copies = replication_factor or default.replication_factor
    if critical:
        copies = max(copies, default.replication_factor)
    if copies > brokers:
        raise DurabilityError(
            f"replication factor {copies} is larger than the cluster ({brokers} broker(s)); "
            f"set MODELBUS_REPLICATION_FACTOR to at most {brokers} or add brokers"
        )
    in_sync = min_insync_replicas or (2 if copies >= 3 else 1)
    if critical:
        in_sync = max(in_sync, default.min_insync_replicas)
    if in_sync > copies:
        raise DurabilityError(
            f"min.insync.replicas {in_sync} exceeds the replication factor {copies}; "
            "every write would be refused"
        )
    return Durability(copies, in_sync)


def data_topic(model: str, kind: str) -> str:
    """``modelbus.<model>.<kind>`` for kind in requests, predictions, feedback, dlq, shadow."""
    if kind not in _DATA_KINDS:
        raise ValueError(f"unknown data topic kind {kind!r}; expected one of {_DATA_KINDS}")
    return f"modelbus.{model}.{kind}"


def shadow_topic(model: str) -> str:
    """``modelbus.<model>.shadow``: a shadow candidate's results, never read by callers."""
    return data_topic(model, "shadow")


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
        TopicSpec(
            LIFECYCLE_TOPIC, 1, {"retention.ms": "-1", "cleanup.policy": "delete"}, critical=True
        ),
        # One record per fingerprint is all a reader needs, forever.
        TopicSpec(
            SCHEMAS_TOPIC, 1, {"cleanup.policy": "compact", "retention.ms": "-1"}, critical=True
        ),
        TopicSpec(HEALTH_TOPIC, 1, retention),
        TopicSpec(SHARED_DLQ_TOPIC, 1, retention),
    ]
    for model in models:
        specs += [
            TopicSpec(data_topic(model, kind), data_partitions, retention) for kind in _DATA_KINDS
        ]
    return specs


class TopicCreationRefused(PermissionError):
    """A topic is missing and this principal may not create it (security on)."""

    def __init__(self, topic: str) -> None:
        super().__init__(
            f"topic {topic} does not exist and this principal may not create topics: create "
            "them as admin first (`modelbus topics create` with <run dir>/credentials/admin.env "
            "sourced)"
        )


def ensure_topics(
    bootstrap_servers: str,
    specs: list[TopicSpec],
    timeout_s: float = 30.0,
    *,
    replication_factor: int | None = None,
    min_insync_replicas: int | None = None,
) -> list[str]:
    """Create the topics that do not exist yet; returns the names created.

    Durability follows ``plan_durability`` for the number of brokers the cluster has now;
    DurabilityError names the fix when the cluster is too small for what is asked.
    """
    admin = AdminClient(client_config(bootstrap_servers))
    metadata = admin.list_topics(timeout=timeout_s)
    existing = set(metadata.topics)
    missing = [spec for spec in specs if spec.name not in existing]
    if not missing:
        return []
    brokers = len(metadata.brokers)
    new_topics = []
    for spec in missing:
        durability = plan_durability(
            brokers,
            replication_factor=replication_factor,
            min_insync_replicas=min_insync_replicas,
            critical=spec.critical,
        )
        config = {**spec.config, "min.insync.replicas": str(durability.min_insync_replicas)}
        new_topics.append(
            NewTopic(spec.name, spec.partitions, durability.replication_factor, config=config)
        )
    futures = admin.create_topics(new_topics, operation_timeout=timeout_s)
    created = []
    for name, future in futures.items():
        try:
            future.result()
            created.append(name)
        except Exception as error:
            if "AUTHORIZATION_FAILED" in str(error):
                raise TopicCreationRefused(name) from error
            if "TOPIC_ALREADY_EXISTS" not in str(error):
                raise
    _wait_until_served(bootstrap_servers, created, timeout_s)
    return created


def _wait_until_served(bootstrap_servers: str, topics: list[str], timeout_s: float) -> None:
    """Return once every partition of ``topics`` has a leader that answers for its offsets.

    A topic is created before its leaders are elected; a reader straight after would get
    NOT_LEADER_FOR_PARTITION.
    """
    if not topics:
        return
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    probe = Consumer({**client_config(bootstrap_servers), "group.id": "modelbus-topic-probe"})
    deadline = time.monotonic() + timeout_s
    try:
        pending = list(topics)
        while pending:
            topic = pending[0]
            try:
                partitions = probe.list_topics(topic, timeout=5).topics[topic].partitions
                for partition in partitions:
                    probe.get_watermark_offsets(TopicPartition(topic, partition), timeout=5)
                pending.pop(0)
            except (KafkaException, KeyError):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"topic {topic} has no leader after {timeout_s}s") from None
                time.sleep(0.2)
    finally:
        probe.close()


def ensure_deployment_topics(settings: KafkaSettings, models: list[str] | None = None) -> list[str]:
    """Every topic a deployment needs (shared ones, and those of ``models``, by default the
    configured models), shaped by ``settings``: partitions, retention, durability.

    Returns the names created now.
    """
    specs = topic_specs(
        settings.models if models is None else models,
        data_partitions=settings.data_partitions,
        retention_ms=settings.data_retention_ms,
    )
    return ensure_topics(
        settings.bootstrap_servers,
        specs,
        replication_factor=settings.replication_factor,
        min_insync_replicas=settings.min_insync_replicas,
    )


def describe_topics(bootstrap_servers: str, names: list[str], timeout_s: float = 30.0) -> dict:
    """name -> (partitions, replication factor, min.insync.replicas) of existing topics."""
    from confluent_kafka.admin import ConfigResource

    admin = AdminClient(client_config(bootstrap_servers))
    metadata = admin.list_topics(timeout=timeout_s)
    present = [name for name in names if name in metadata.topics]
    resources = [ConfigResource(ConfigResource.Type.TOPIC, name) for name in present]
    described: dict[str, tuple[int, int, int]] = {}
    for resource, future in admin.describe_configs(resources).items():
        partitions = metadata.topics[resource.name].partitions
        replicas = min(len(p.replicas) for p in partitions.values())
        min_isr = int(future.result()["min.insync.replicas"].value)
        described[resource.name] = (len(partitions), replicas, min_isr)
    return described

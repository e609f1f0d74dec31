"""``modelbus status``: which services run, what each model serves, how far behind each group is."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient

from modelbus.bus.security import client_config
from modelbus.events import types as t


@dataclass
class Serving:
    """One model's state as the lifecycle log tells it."""

    model: str
    champion: int | None = None
    routes: list[t.Route] = field(default_factory=list)
    candidate: int | None = None
    last_verdict: str = ""
    registered: list[int] = field(default_factory=list)


def fold_serving(events: list[Any]) -> dict[str, Serving]:
    """Champion, routes, candidate under canary and the latest verdict, per model."""
    models: dict[str, Serving] = {}
    for event in events:
        model = getattr(event, "model", None)
        if model is None:
            continue
        state = models.setdefault(model, Serving(model))
        if isinstance(event, t.ModelRegistered):
            state.registered.append(event.version)
        elif isinstance(event, t.TrafficShifted):
            state.routes = list(event.routes)
        elif isinstance(event, t.RolloutStarted):
            state.candidate = event.candidate_version
        elif isinstance(event, t.CanaryEvaluated):
            state.last_verdict = (
                f"v{event.candidate_version} at {event.step_pct:g}%: {event.verdict}"
            )
        elif isinstance(event, t.ModelPromoted):
            state.champion, state.candidate = event.version, None
        elif isinstance(event, t.ModelRolledBack):
            state.champion, state.candidate = event.restored_version, None
    return models


def consumer_lag(bootstrap_servers: str, timeout_s: float = 10.0) -> dict[str, int]:
    """Messages behind the end of their topics, per consumer group (committed offsets)."""
    admin = AdminClient(client_config(bootstrap_servers))
    listed = admin.list_consumer_groups(request_timeout=timeout_s).result()
    groups = sorted(g.group_id for g in listed.valid)
    if not groups:
        return {}
    from confluent_kafka import Consumer

    probe = Consumer({**client_config(bootstrap_servers), "group.id": "modelbus-status-probe"})
    lag: dict[str, int] = {}
    try:
        for group in groups:
            request = [ConsumerGroupTopicPartitions(group)]
            offsets = admin.list_consumer_group_offsets(request)[group].result()
            committed = [p for p in offsets.topic_partitions or [] if p.offset >= 0]
            if not committed:
                continue  # a reader that never commits (followers, replays)
            behind = 0
            for partition in committed:
                high = probe.get_watermark_offsets(
                    TopicPartition(partition.topic, partition.partition), timeout=timeout_s
                )[1]
                behind += max(high - partition.offset, 0)
            lag[group] = behind
    finally:
        probe.close()
    return lag

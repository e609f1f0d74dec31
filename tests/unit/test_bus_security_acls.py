"""The ACL table agrees with what each service reads and writes, and keeps producers out."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelbus.bus.acls import CLIENT, SERVICES, acl_table, may
from modelbus.bus.topics import (
    HEALTH_TOPIC,
    LIFECYCLE_TOPIC,
    SCHEMAS_TOPIC,
    SHARED_DLQ_TOPIC,
    data_topic,
)
from modelbus.catalogue import EVENTS, components, scan

REPO = Path(__file__).resolve().parents[2]
MODELS = ["credit", "fraud"]
TABLE = acl_table(MODELS)


def topics_of_event(name: str, model: str) -> set[str]:
    """Where an event of type ``name`` about ``model`` lives (as modelbus.bus.topics.route)."""
    if EVENTS[name] == "lifecycle":
        return {LIFECYCLE_TOPIC}
    return {
        "PredictionRequest": {data_topic(model, "requests")},
        "PredictionResult": {data_topic(model, "predictions")},
        "Feedback": {data_topic(model, "feedback")},
        "ModelHealth": {HEALTH_TOPIC},
        "DeadLetter": {data_topic(model, "dlq"), SHARED_DLQ_TOPIC},
    }[name]


def every_topic() -> set[str]:
    shared = {LIFECYCLE_TOPIC, SCHEMAS_TOPIC, HEALTH_TOPIC, SHARED_DLQ_TOPIC}
    kinds = ("requests", "predictions", "feedback", "dlq", "shadow")
    return shared | {data_topic(m, kind) for m in MODELS for kind in kinds}


def allowed(principal: str, operation: str) -> set[str]:
    return {topic for topic in every_topic() if may(TABLE, principal, operation, topic)}


def consumed_and_produced(service: str) -> tuple[set[str], set[str]]:
    produced, consumed = scan(components(REPO)[service])
    reads = {topic for name in consumed for m in MODELS for topic in topics_of_event(name, m)}
    writes = {topic for name in produced for m in MODELS for topic in topics_of_event(name, m)}
    return reads, writes


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_reads_exactly_the_topics_of_the_events_it_consumes(service: str) -> None:
    reads, _writes = consumed_and_produced(service)
    # The trainer's training snapshot reads requests joined with feedback by offsets
    # (modelbus_trainer.sources), not through a handler table.
    snapshot = {data_topic(m, k) for m in MODELS for k in ("requests", "feedback")}
    also_read = snapshot if service == "trainer" else set()
    assert allowed(f"User:{service}", "READ") == reads | {SCHEMAS_TOPIC} | also_read


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_may_write_the_events_it_produces_its_schemas_and_dead_letters(
    service: str,
) -> None:
    _reads, writes = consumed_and_produced(service)
    granted = allowed(f"User:{service}", "WRITE")
    assert writes | {SCHEMAS_TOPIC, SHARED_DLQ_TOPIC} <= granted
    beyond = granted - writes - {SCHEMAS_TOPIC, SHARED_DLQ_TOPIC}
    # Inference also writes its shadow results and dead letters of its own requests; the
    # monitor dead-letters the data-plane messages it cannot read.
    expected_beyond = {
        "inference": {data_topic(m, kind) for m in MODELS for kind in ("shadow", "dlq")},
        "monitor": {data_topic(m, "dlq") for m in MODELS},
    }.get(service, set())
    assert beyond == expected_beyond


def test_producers_write_only_requests_and_feedback_and_read_only_predictions() -> None:
    client = f"User:{CLIENT}"
    requests_and_feedback = {data_topic(m, k) for m in MODELS for k in ("requests", "feedback")}
    assert allowed(client, "WRITE") == requests_and_feedback
    assert allowed(client, "READ") == {data_topic(m, "predictions") for m in MODELS} | {
        SCHEMAS_TOPIC
    }
    assert not allowed(client, "DESCRIBE")


def test_only_service_principals_write_lifecycle_health_and_schemas() -> None:
    for topic in (LIFECYCLE_TOPIC, HEALTH_TOPIC, SCHEMAS_TOPIC):
        writers = {g.principal for g in TABLE if g.operation == "WRITE" and g.name == topic}
        assert writers <= {f"User:{service}" for service in SERVICES}
        assert f"User:{CLIENT}" not in writers


def test_health_is_written_by_the_monitor_alone() -> None:
    writers = {g.principal for g in TABLE if g.operation == "WRITE" and g.name == HEALTH_TOPIC}
    assert writers == {"User:monitor"}


def grants_group(principal: str, group: str) -> bool:
    return any(
        g.principal == principal
        and g.resource == "GROUP"
        and g.operation == "READ"
        and (group == g.name or (g.pattern == "PREFIXED" and group.startswith(g.name)))
        for g in TABLE
    )


def test_each_service_may_join_its_default_consumer_groups() -> None:
    from modelbus_deployer.config import Settings as DeployerSettings
    from modelbus_inference.config import Settings as InferenceSettings
    from modelbus_monitor.config import Settings as MonitorSettings
    from modelbus_registry.config import Settings as RegistrySettings
    from modelbus_trainer.config import Settings as TrainerSettings

    monitor = MonitorSettings()
    groups = {
        "registry": [RegistrySettings.model_fields["group_id"].default],
        "trainer": [TrainerSettings.model_fields["group_id"].default],
        "deployer": [DeployerSettings.model_fields["group_id"].default],
        "monitor": [monitor.group_id, f"{monitor.group_id}-lease"],
        "inference": [InferenceSettings(model="credit").consumer_group],
    }
    for service, names in groups.items():
        for group in names:
            assert grants_group(f"User:{service}", group), (service, group)
        assert not grants_group(f"User:{CLIENT}", names[0])


def test_transactional_ids_of_inference_and_the_deployer_are_granted_to_them_alone() -> None:
    from modelbus_inference.config import Settings as InferenceSettings

    worker = InferenceSettings(model="credit", worker_index=3).worker_name
    decisions = "modelbus-deployer-decisions"
    for principal, transactional_id in (("inference", worker), ("deployer", decisions)):
        holders = {
            g.principal
            for g in TABLE
            if g.resource == "TRANSACTIONAL_ID" and transactional_id.startswith(g.name)
        }
        assert holders == {f"User:{principal}"}
        operations = {
            g.operation
            for g in TABLE
            if g.principal == f"User:{principal}" and g.resource == "TRANSACTIONAL_ID"
        }
        assert operations == {"WRITE", "DESCRIBE"}

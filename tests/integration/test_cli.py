"""Every ``modelbus`` command on the real broker, but ``demo`` and ``up`` (the e2e test runs
the demo) and ``audit prediction(s)`` and ``replay`` (tests/integration/test_reproduce.py).

Commands run in-process through typer's CliRunner; one test runs the installed entry point as
a subprocess. Each test names its own model (``unique``) and reads back only that model's
events, since the broker and its lifecycle log are shared with other tests.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient
from typer.testing import CliRunner

from modelbus.bus import LIFECYCLE_TOPIC
from modelbus.bus.reading import read_events
from modelbus.bus.security import client_config
from modelbus.bus.topics import data_topic, topic_specs
from modelbus.cli.main import app
from modelbus.config import KafkaSettings
from modelbus.events import new_meta
from modelbus.events import types as t
from modelbus.events.meta import now_utc
from tests.support.broker import (
    create_model_topics,
    lifecycle_events,
    publish_lifecycle,
    request_codec,
)
from tests.support.events import meta_at, registered, shifted
from tests.support.packages import credit_rows, make_package
from tests.support.processes import start_worker, stop_workers

pytestmark = pytest.mark.integration


@pytest.fixture
def cli(kafka_settings: KafkaSettings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """Run one command against the test broker; returns the Result, with its output in
    ``.text`` as words (rich wraps long lines at the runner's width and draws table borders)."""
    monkeypatch.setenv("MODELBUS_BOOTSTRAP_SERVERS", kafka_settings.bootstrap_servers)
    monkeypatch.setenv("MODELBUS_RUN_DIR", str(tmp_path / "run"))
    runner = CliRunner()

    def invoke(*args: str) -> Any:
        result = runner.invoke(app, list(args), catch_exceptions=False)
        result.text = " ".join(re.sub("[\u2500-\u257f]", " ", result.output).split())
        return result

    return invoke


def _events(settings: KafkaSettings, model: str, *kinds: type) -> list[Any]:
    return lifecycle_events(settings.bootstrap_servers, request_codec(), model, kinds)


def test_the_entry_point_lists_every_command(kafka_settings: KafkaSettings) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "modelbus.cli", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )
    listed = {
        line.split()[1]
        for line in done.stdout.splitlines()
        if line.startswith("│ ") and line[2] != " " and line.split()[1].isalpha()
    }
    assert listed == {
        "topics", "events", "audit", "replay", "selfcheck", "train", "rollback", "promote",
        "rollout", "predict", "up", "down", "status", "demo", "acls", "keys",
    }  # fmt: skip


def test_train_publishes_one_training_requested_with_the_given_fields(
    cli: Any, kafka_settings: KafkaSettings, unique: str
) -> None:
    model = f"cli{unique}"
    result = cli("train", model, "--reason", "quarterly refresh", "--seed", "42")
    assert result.exit_code == 0, result.output
    [event] = _events(kafka_settings, model, t.TrainingRequested)
    assert (event.model, event.reason, event.seed) == (model, "quarterly refresh", 42)
    assert event.requested_by.endswith("@cli")
    assert event.meta.causation_id is None
    assert f"event_id {event.meta.event_id}" in result.text
    assert result.text.startswith(f"published TrainingRequested: model={model}, ")


def test_events_tail_prints_only_the_asked_type_and_model_as_json_lines(
    cli: Any, kafka_settings: KafkaSettings, unique: str
) -> None:
    model = f"cli{unique}"
    assert cli("train", model, "--seed", "1").exit_code == 0
    assert cli("train", model, "--seed", "2").exit_code == 0
    publish_lifecycle(kafka_settings, request_codec(), shifted(model, [("champion", 1, 100.0)]))
    result = cli("events", "tail", "--model", model, "--type", "TrainingRequested", "--json")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines()]
    requested = _events(kafka_settings, model, t.TrainingRequested)
    assert [line["type"] for line in lines] == ["modelbus.events.TrainingRequested"] * 2
    assert [line["event"]["seed"] for line in lines] == [1, 2]
    assert [line["event"]["meta"]["event_id"] for line in lines] == [
        event.meta.event_id for event in requested
    ]
    unknown = cli("events", "tail", "--type", "NoSuchEvent")
    assert unknown.exit_code == 2
    assert "NoSuchEvent" in unknown.text


def test_promote_and_rollback_refuse_before_publishing_what_the_log_cannot_honour(
    cli: Any, kafka_settings: KafkaSettings, unique: str, tmp_path: Path
) -> None:
    model = f"cli{unique}"
    unknown = cli("promote", model, "1")
    assert unknown.exit_code == 2
    assert unknown.text.startswith("refused:")
    publish_lifecycle(
        kafka_settings,
        request_codec(),
        registered(model, 1, tmp_path, "0" * 64),
        t.ModelPromoted(meta=meta_at(now_utc()), model=model, version=1, reason="first"),
        registered(model, 2, tmp_path, "1" * 64),
    )
    for args in (("promote", model, "9"), ("promote", model, "1"), ("rollback", model)):
        refused = cli(*args)
        assert refused.exit_code == 2, (args, refused.output)
        assert refused.text.startswith("refused:"), refused.text
    assert _events(kafka_settings, model, t.PromotionRequested, t.RollbackRequested) == []

    accepted = cli("promote", model, "2", "--reason", "better", "--wait-s", "0")
    assert accepted.exit_code == 0, accepted.output
    [request] = _events(kafka_settings, model, t.PromotionRequested)
    assert (request.version, request.reason) == (2, "better")
    no_deployer = cli("promote", model, "2", "--wait-s", "2")
    assert no_deployer.exit_code == 1
    assert "no decision within 2s: is the deployer running?" in no_deployer.text


def test_rollout_status_and_status_fold_the_log_for_the_model(
    cli: Any, kafka_settings: KafkaSettings, unique: str, tmp_path: Path
) -> None:
    model = f"cli{unique}"
    first = registered(model, 1, tmp_path, "0" * 64)
    publish_lifecycle(
        kafka_settings,
        request_codec(),
        first,
        t.ModelPromoted(meta=meta_at(now_utc()), model=model, version=1, reason="first"),
        shifted(model, [("champion", 1, 100.0)]),
    )
    result = cli("rollout", "status", model, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {
        "model": model,
        "champion": 1,
        "registered": [1],
        "routes": [["champion", 1, 100.0]],
        "last_outcome": "v1 promoted: first",
        "rollout": None,
    }
    missing = cli("rollout", "status", f"none{unique}")
    assert missing.exit_code == 1
    assert f"model 'none{unique}' is not in the lifecycle log" in missing.text

    status = cli("status")
    assert status.exit_code == 0, status.output
    assert "registry not running" in status.text
    assert "deployer not running" in status.text
    assert "consumer lag" in status.text


def test_topics_create_reports_each_topic_and_refuses_more_replicas_than_brokers(
    cli: Any, kafka_settings: KafkaSettings, monkeypatch: pytest.MonkeyPatch, unique: str
) -> None:
    result = cli("topics", "create", "--partitions", "4")
    assert result.exit_code == 0, result.output
    names = [
        spec.name
        for spec in topic_specs(
            kafka_settings.models,
            data_partitions=4,
            retention_ms=kafka_settings.data_retention_ms,
        )
    ]
    reported = re.findall(r"(created|exists) (\S+) partitions=", result.text)
    assert [name for _, name in reported] == names
    assert f"exists {LIFECYCLE_TOPIC} partitions=1 replicas=1" in result.text

    # Only topics still to create are planned: a new model's, with more copies than brokers.
    monkeypatch.setenv("MODELBUS_MODELS", json.dumps([f"cli{unique}"]))
    monkeypatch.setenv("MODELBUS_REPLICATION_FACTOR", "3")
    refused = cli("topics", "create")
    assert refused.exit_code == 2
    assert refused.text == (
        "replication factor 3 is larger than the cluster (1 broker(s)); "
        "set MODELBUS_REPLICATION_FACTOR to at most 1 or add brokers"
    )
    metadata = AdminClient(client_config(kafka_settings.bootstrap_servers)).list_topics(timeout=30)
    assert not [name for name in metadata.topics if f"cli{unique}" in name]


def test_selfcheck_round_trips_every_event_type_through_the_broker(cli: Any) -> None:
    from modelbus.events.meta import DATA_PLANE_EVENTS, LIFECYCLE_EVENTS

    result = cli("selfcheck")
    assert result.exit_code == 0, result.output
    count = len(LIFECYCLE_EVENTS + DATA_PLANE_EVENTS)
    assert result.text.endswith(f"{count}/{count} events came back: all identical")
    assert result.text.count("identical") == count + 1


def test_down_reports_every_service_it_did_not_start(cli: Any) -> None:
    result = cli("down")
    assert result.exit_code == 0
    assert result.output.split("\n")[:-1] == [
        f"{name:10} was not running"
        for name in ("registry", "trainer", "inference", "monitor", "deployer")
    ]


def test_audit_of_a_small_log_counts_its_events_and_names_no_problem(
    cli: Any, kafka_settings: KafkaSettings, unique: str, tmp_path: Path
) -> None:
    model = f"cli{unique}"
    first = registered(model, 1, tmp_path, "0" * 64)
    promoted = t.ModelPromoted(
        meta=new_meta("deployer@test", cause=first), model=model, version=1, reason="first"
    )
    publish_lifecycle(kafka_settings, request_codec(), first, promoted)
    result = cli("audit", "--model", model, "--json", "--no-artifacts")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert (report["ok"], report["events"], report["problems"]) == (True, 2, [])

    publish_lifecycle(kafka_settings, request_codec(), promoted)
    again = json.loads(cli("audit", "--model", model, "--json", "--no-artifacts").output)
    assert (again["ok"], again["events"], again["redeliveries"]) == (True, 3, 1), again["problems"]


@pytest.fixture
def served(kafka_settings: KafkaSettings, tmp_path: Path, unique: str) -> Iterator[str]:
    """A unique credit model with version 1 (seeded weights, no training) registered and one
    inference worker serving it."""
    model = f"credit{unique}"
    create_model_topics(kafka_settings, model)
    package = tmp_path / "v1"
    sha256 = make_package(package, model, seed=5)
    publish_lifecycle(kafka_settings, request_codec(), registered(model, 1, package, sha256))
    worker = start_worker(kafka_settings.bootstrap_servers, model)
    try:
        yield model
    finally:
        stop_workers([worker])


def test_predict_prints_the_result_the_inference_worker_answered(
    cli: Any, kafka_settings: KafkaSettings, served: str
) -> None:
    [row], _ = credit_rows(1, seed=3)
    result = cli("predict", served, json.dumps(row), "--contract", "credit", "--timeout-s", "120")
    assert result.exit_code == 0, result.output
    assert result.text.startswith("PredictionResult: ")
    request_id = result.text.split("request_id=")[1].split(",")[0]
    [answer] = [
        event
        for event in read_events(
            kafka_settings.bootstrap_servers, data_topic(served, "predictions"), request_codec()
        )
        if getattr(event, "request_id", None) == request_id
    ]
    assert f"model={served}" in result.text
    assert f"version={answer.version}, variant={answer.variant}" in result.text
    assert (answer.version, answer.model) == (1, served)
    assert f"scores={answer.scores}, label={answer.label}," in result.text
    [sent] = [
        event
        for event in read_events(
            kafka_settings.bootstrap_servers, data_topic(served, "requests"), request_codec()
        )
        if getattr(event, "request_id", None) == request_id
    ]
    assert dict(sent.features) == row

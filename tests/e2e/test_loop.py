"""The loop through every built service: train -> register -> serve -> drift -> retrain -> serve.

Trainer, registry and inference run as real processes on the session's broker, with SQLite
and an MLflow store of their own. The test uses a model name of its own (the credit contract
under another name), so its topics and versions are its own on a shared broker.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelbus.audit import audit
from modelbus.bus import LIFECYCLE_TOPIC, Publisher, data_topic, ensure_topics, topic_specs
from modelbus.bus.schema_topic import kafka_schema_store
from modelbus.cli.follow import TopicFollower
from modelbus.config import KafkaSettings
from modelbus.data import generate_credit
from modelbus.events import Codec, build_codec, find_schema_dir, new_meta
from modelbus.events import types as t
from modelbus.events.meta import now_utc
from tests.support.broker import start_at_log_end
from tests.support.ports import free_port
from tests.support.processes import http_ready, registry_env, service

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]


class Loop:
    """The test's side of the bus: ask for training, send traffic, follow what happens."""

    def __init__(self, settings: KafkaSettings, model: str, codec: Codec) -> None:
        self.settings = settings
        self.model = model
        self.codec = codec
        self.publisher = Publisher(settings, codec, client_id="e2e")
        self.lifecycle = TopicFollower(settings.bootstrap_servers, LIFECYCLE_TOPIC, codec)
        self.seen: list[Any] = []

    def _mine(self, event: Any) -> None:
        if getattr(event, "model", None) == self.model:
            self.seen.append(event)

    def train(self, reason: str) -> tuple[t.TrainingRequested, t.ModelRegistered]:
        """Ask for a model and wait until it is registered and loaded by inference."""
        request = t.TrainingRequested(
            meta=new_meta("e2e"), model=self.model, reason=reason, requested_by="e2e"
        )
        self.publisher.publish(request)
        self.publisher.flush()
        registered = self.lifecycle.wait_for(
            lambda e: (
                isinstance(e, t.ModelRegistered | t.TrainingFailed | t.RegistrationFailed)
                and e.meta.correlation_id == request.meta.correlation_id
            ),
            timeout_s=300,
            on_event=self._mine,
            what=f"answer to {reason}",
        )
        assert isinstance(registered, t.ModelRegistered), registered
        self.lifecycle.wait_for(
            lambda e: (
                isinstance(e, t.ModelLoaded)
                and e.model == self.model
                and e.version == registered.version
            ),
            timeout_s=120,
            on_event=self._mine,
            what=f"ModelLoaded v{registered.version}",
        )
        return request, registered

    def score(self, rows: list[dict[str, Any]], labels: list[int]) -> dict[str, t.PredictionResult]:
        """Send requests (and their Feedback) and return every committed result by request id."""
        follower = TopicFollower(
            self.settings.bootstrap_servers, data_topic(self.model, "predictions"), self.codec
        )
        batch = uuid.uuid4().hex[:6]
        ids = [f"{batch}-{index}" for index in range(len(rows))]
        schema = f"modelbus.models.{self.model}.PredictionRequest"
        for request_id, row in zip(ids, rows, strict=True):
            self.publisher.publish(
                t.PredictionRequest(
                    meta=new_meta("e2e"),
                    request_id=request_id,
                    model=self.model,
                    sent_at=now_utc(),
                    features=row,
                ),
                schema_name=schema,
            )
        self.publisher.flush()
        results: list[t.PredictionResult] = []

        def every_result_arrived(event: Any) -> bool:
            if isinstance(event, t.PredictionResult) and event.request_id.startswith(batch):
                results.append(event)
            return len(results) >= len(ids)

        try:
            follower.wait_for(every_result_arrived, timeout_s=180, what="every result")
            results.extend(
                e for e in follower.poll(2.0) if isinstance(e, t.PredictionResult)
            )  # duplicates, if any, would show up here
        finally:
            follower.close()
        for request_id, label in zip(ids, labels, strict=True):
            self.publisher.publish(
                t.Feedback(
                    meta=new_meta("e2e"),
                    request_id=request_id,
                    model=self.model,
                    label=label,
                    observed_at=now_utc(),
                )
            )
        self.publisher.flush()
        by_id = {result.request_id: result for result in results}
        assert len(results) == len(by_id) == len(ids), "exactly one result per request"
        return {request_id: by_id[request_id] for request_id in ids}


def _accuracy(results: dict[str, t.PredictionResult], labels: list[int]) -> float:
    return sum(r.label == y for r, y in zip(results.values(), labels, strict=True)) / len(labels)


@pytest.fixture(scope="module")
def loop(kafka_settings: KafkaSettings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loop]:
    """Trainer, registry and inference processes for a model of the test's own."""
    model = f"e2e{uuid.uuid4().hex[:8]}"
    root = tmp_path_factory.mktemp("e2e")
    schema_dir = root / "schemas"
    shutil.copytree(find_schema_dir(), schema_dir)
    contract = json.loads((schema_dir / "models" / "credit.avsc").read_text())
    contract["namespace"] = f"modelbus.models.{model}"
    (schema_dir / "models" / f"{model}.avsc").write_text(json.dumps(contract))
    ensure_topics(
        kafka_settings.bootstrap_servers,
        topic_specs([model], data_partitions=2, retention_ms=3_600_000),
    )
    tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
    common = {
        "MODELBUS_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
        "MODELBUS_SCHEMA_DIR": str(schema_dir),
        "MODELBUS_MODELS": json.dumps([model]),
        "MLFLOW_TRACKING_URI": tracking_uri,
    }
    registry_group, trainer_group = f"e2e-registry-{model}", f"e2e-trainer-{model}"
    for group in (registry_group, trainer_group):
        start_at_log_end(kafka_settings.bootstrap_servers, group)
    registry_port, inference_port = free_port(), free_port()
    (root / "registry").mkdir()
    registry = {
        **common,
        **registry_env(
            kafka_settings.bootstrap_servers,
            root / "registry",
            port=registry_port,
            tracking_uri=tracking_uri,
            group_id=registry_group,
        ),
    }
    trainer = {
        **common,
        "MODELBUS_TRAINER_GROUP_ID": trainer_group,
        "MODELBUS_TRAINER_RUN_DIR": str(root / "trainer"),
        "MODELBUS_TRAINER_MLFLOW_ARTIFACT_ROOT": str(root / "mlartifacts"),
        "MODELBUS_TRAINER_REFERENCE_ROWS": "3000",
        "MODELBUS_TRAINER_EPOCHS": "40",
        "MODELBUS_TRAINER_BATCH_SIZE": "64",
        "MODELBUS_TRAINER_REPO_DIR": str(REPO),
        "MODELBUS_TRAINER_KAFKA_READ_TIMEOUT_S": "10",
    }
    inference = {
        **common,
        "MODELBUS_INFERENCE_MODEL": model,
        "MODELBUS_INFERENCE_SERVE_LATEST_WITHOUT_ROUTES": "true",
        "MODELBUS_INFERENCE_HTTP_PORT": str(inference_port),
    }
    codec = build_codec(kafka_schema_store(kafka_settings.bootstrap_servers))
    with (
        service(
            "modelbus_registry",
            registry,
            root / "registry",
            ready=http_ready(f"http://127.0.0.1:{registry_port}/healthz"),
        ),
        service("modelbus_trainer", trainer, root),
        # Inference serves once a version loads; `train` waits for its ModelLoaded.
        service("modelbus_inference", inference, root),
    ):
        from modelbus.events import register_contract

        register_contract(codec.store, contract)
        yield Loop(kafka_settings, model, codec)


def test_drift_is_answered_by_a_retrained_version_that_serves_every_request_once(
    loop: Loop,
) -> None:
    first_request, first = loop.train("e2e: first model")
    assert (first.version, first.parent_version) == (1, None)
    assert first.meta.correlation_id == first_request.meta.correlation_id

    rows, labels = generate_credit(600, seed=11)
    served = loop.score(rows, labels)
    assert {r.version for r in served.values()} == {1}
    assert _accuracy(served, labels) > 0.9

    drift_rows, drift_labels = generate_credit(3000, seed=12, classification_function=4)
    drifted = loop.score(drift_rows, drift_labels)
    drifted_accuracy = _accuracy(drifted, drift_labels)
    assert drifted_accuracy < 0.7, "the new rule must hurt the old model"

    second_request, second = loop.train(f"e2e: accuracy fell to {drifted_accuracy:.2f}")
    assert (second.version, second.parent_version) == (2, 1)

    fresh_rows, fresh_labels = generate_credit(600, seed=13, classification_function=4)
    after = loop.score(fresh_rows, fresh_labels)
    assert {r.version for r in after.values()} == {2}
    assert _accuracy(after, fresh_labels) > drifted_accuracy + 0.1

    trained = [e for e in loop.seen if isinstance(e, t.ModelTrained)]
    assert [e.meta.causation_id for e in trained] == [
        first_request.meta.event_id,
        second_request.meta.event_id,
    ]
    # Retraining read every labelled request sent before it: 600 before drift, 3000 after.
    production = [s for s in trained[1].data.sources if s.kind == "topic"]
    assert sum(s.rows for s in production if s.uri == data_topic(loop.model, "requests")) == 3600
    report = audit(loop.seen)
    assert report.ok, report.problems
    assert report.versions == {loop.model: [1, 2]}

"""The trainer on the real broker: TrainingRequested -> TrainingStarted -> ModelTrained."""

from __future__ import annotations

import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import mlflow
import pytest
from confluent_kafka import Consumer, TopicPartition
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from modelbus.bus import LIFECYCLE_TOPIC, Publisher, data_topic, kafka_schema_store
from modelbus.bus.security import client_config
from modelbus.data import file_sha256, generate_credit
from modelbus.events import build_codec, load_contract, new_meta
from modelbus.events import types as t
from modelbus.events.meta import now_utc
from modelbus.events.schemas import fingerprint_of
from modelbus.packaging import capture_environment, load_package, verify_package
from modelbus_trainer.bootstrap import bootstrap, replay_lifecycle
from modelbus_trainer.config import Settings
from modelbus_trainer.domain import TrainerState
from modelbus_trainer.snapshot import load_snapshot
from tests.support.signing import role_signers

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
PRODUCTION_ROWS = 200
LABELLED_ROWS = 150
WINDOW = 5_000


class NotYet(Exception):
    pass


class LifecycleWatch:
    """Reads modelbus.lifecycle from a fixed offset on; waits for events with a deadline."""

    def __init__(self, bootstrap_servers: str, codec) -> None:
        self.codec = codec
        self.consumer = Consumer(
            {**client_config(bootstrap_servers), "group.id": f"watch-{uuid.uuid4()}",
             "enable.auto.commit": False}
        )  # fmt: skip
        _, high = self.consumer.get_watermark_offsets(TopicPartition(LIFECYCLE_TOPIC, 0), 10)
        self.consumer.assign([TopicPartition(LIFECYCLE_TOPIC, 0, high)])
        self.events: list = []

    def wait_for(self, found: Callable[[list], object], timeout_s: float = 240) -> object:
        for attempt in Retrying(stop=stop_after_delay(timeout_s), wait=wait_fixed(0.2),
                                retry=retry_if_exception_type(NotYet), reraise=True):  # fmt: skip
            with attempt:
                for message in self.consumer.consume(100, 0.5):
                    if not message.error():
                        self.events.append(self.codec.decode(message.value()))
                result = found(self.events)
                if not result:
                    raise NotYet
        return result

    def caused_by(self, cause_id: str, kind: type) -> list:
        return [e for e in self.events if isinstance(e, kind) and e.meta.causation_id == cause_id]


@pytest.fixture(scope="module")
def trainer(kafka_settings, tmp_path_factory) -> Iterator[tuple]:
    run_dir = tmp_path_factory.mktemp("trainer")
    settings = Settings(
        kafka=kafka_settings,
        group_id=f"trainer-{uuid.uuid4().hex[:10]}",
        run_dir=run_dir,
        mlflow_tracking_uri=f"sqlite:///{run_dir}/mlflow.db",
        mlflow_artifact_root=run_dir / "mlartifacts",
        reference_rows=2_000,
        production_rows=WINDOW,
        epochs=3,
        drift_cooldown_s=20,  # short, so reruns of this module are new episodes
        worker="process",
        repo_dir=REPO,
    )
    codec = build_codec(kafka_schema_store(kafka_settings.bootstrap_servers), models=("credit",))
    publisher = Publisher(kafka_settings, codec, client_id="test-trainer", signer=role_signers())
    publisher.publish_all_schemas()
    watch = LifecycleWatch(kafka_settings.bootstrap_servers, codec)
    app = bootstrap(settings)
    app.catch_up()
    stop = threading.Event()
    thread = threading.Thread(target=app.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield settings, codec, publisher, watch
    finally:
        stop.set()
        thread.join(timeout=120)


def _publish_production_data(publisher: Publisher, tag: str) -> list[dict]:
    """PRODUCTION_ROWS requests, LABELLED_ROWS of them with Feedback; returns the rows."""
    rows, labels = generate_credit(PRODUCTION_ROWS, seed=1234, covariate_shift=0.5)
    for index, row in enumerate(rows):
        publisher.publish(
            t.PredictionRequest(meta=new_meta("test"), request_id=f"{tag}-{index}",
                                model="credit", sent_at=now_utc(), features=row),
            schema_name="modelbus.models.credit.PredictionRequest",
        )  # fmt: skip
    for index in range(LABELLED_ROWS):
        publisher.publish(
            t.Feedback(meta=new_meta("test"), request_id=f"{tag}-{index}", model="credit",
                       label=labels[index], observed_at=now_utc())
        )  # fmt: skip
    publisher.flush()
    return rows


def _watermarks(bootstrap_servers: str, topic: str) -> dict[int, tuple[int, int]]:
    consumer = Consumer({**client_config(bootstrap_servers), "group.id": f"w-{uuid.uuid4()}"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), 10) for p in partitions}
    finally:
        consumer.close()


def test_a_training_request_yields_started_then_trained_with_full_lineage(trainer) -> None:
    settings, codec, publisher, watch = trainer
    bootstrap_servers = settings.kafka.bootstrap_servers
    tag = uuid.uuid4().hex[:10]
    production_rows = _publish_production_data(publisher, tag)
    ends = {
        kind: _watermarks(bootstrap_servers, data_topic("credit", kind))
        for kind in ("requests", "feedback")
    }
    request = t.TrainingRequested(meta=new_meta("test"), model="credit", reason="integration test",
                                  requested_by="test", seed=7, max_rows=None)  # fmt: skip
    publisher.publish(request)
    publisher.publish(request)  # a redelivery must not start a second job
    publisher.flush()

    cause = request.meta.event_id
    (trained,) = watch.wait_for(
        lambda _: watch.caused_by(cause, t.ModelTrained) or watch.caused_by(cause, t.TrainingFailed)
    )
    assert isinstance(trained, t.ModelTrained), getattr(trained, "reason", "")
    (started,) = watch.caused_by(request.meta.event_id, t.TrainingStarted)
    assert watch.events.index(started) < watch.events.index(trained)
    assert (started.model, started.trigger, started.job_id) == (
        "credit", "TrainingRequested", trained.job_id,
    )  # fmt: skip
    for event in (started, trained):
        assert event.meta.causation_id == request.meta.event_id
        assert event.meta.correlation_id == request.meta.correlation_id
        assert event.meta.producer.startswith("trainer@")

    # Data lineage: the reference file, then every requests/feedback partition read by offsets.
    lineage = trained.data
    reference = settings.reference_path("credit").resolve()
    file_source = lineage.sources[0]
    assert (file_source.kind, file_source.uri, file_source.rows) == ("file", str(reference), 2000)
    assert file_source.sha256 == file_sha256(reference)
    topic_sources = lineage.sources[1:]
    for source in topic_sources:
        kind = source.uri.rpartition(".")[2]
        low, high = ends[kind][source.partition]
        assert source.kind == "topic"
        assert (source.start_offset, source.end_offset) == (max(low, high - WINDOW), high)
    request_rows = sum(s.rows for s in topic_sources if s.uri == data_topic("credit", "requests"))
    feedback_rows = sum(s.rows for s in topic_sources if s.uri == data_topic("credit", "feedback"))
    assert request_rows == feedback_rows >= LABELLED_ROWS
    assert lineage.rows == 2000 + request_rows

    snapshot_rows, _, sha256 = load_snapshot(
        settings.run_dir / "snapshots" / f"{lineage.snapshot_sha256}.jsonl"
    )
    assert sha256 == lineage.snapshot_sha256
    assert len(snapshot_rows) == lineage.rows
    # Earlier runs of this test sent the same rows (fixed seed), hence sets, not counts.
    ours = {row["salary"]: i for i, row in enumerate(production_rows)}
    included = {ours[row["salary"]] for row in snapshot_rows if row["salary"] in ours}
    assert included == set(range(LABELLED_ROWS))  # labelled requests in, unlabelled ones out

    # The package: verified, and it records what the event says.
    manifest = verify_package(trained.artifact_uri, expected_sha256=trained.artifact_sha256)
    assert manifest.lineage == lineage
    assert manifest.code == trained.code
    contract = load_contract("credit")
    assert trained.contract_fingerprint == manifest.contract_fingerprint
    assert trained.contract_fingerprint == fingerprint_of(contract).hex()
    assert trained.environment == capture_environment()
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True)
    assert trained.code.git_sha == head.stdout.strip()
    assert trained.params["seed"] == "7"
    assert set(trained.metrics) >= {"accuracy", "roc_auc", "log_loss"}
    assert load_package(trained.artifact_uri).predict_rows(snapshot_rows[:5]).shape == (5, 2)

    # The champion it would replace, as the lifecycle log says.
    state = TrainerState(drift_cooldown_s=0, max_trigger_age_s=1)
    replay_lifecycle(bootstrap_servers, codec, state)
    assert trained.parent_version == state.parent_version("credit")

    # MLflow has the run, its params, metrics and the snapshot digest.
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    run = mlflow.get_run(trained.run_id)
    assert run.data.params["seed"] == "7"
    assert run.data.metrics["accuracy"] == trained.metrics["accuracy"]
    assert run.data.tags["modelbus.snapshot_sha256"] == lineage.snapshot_sha256
    assert run.data.tags["modelbus.artifact_sha256"] == trained.artifact_sha256
    assert [d.dataset.digest for d in run.inputs.dataset_inputs] == [lineage.snapshot_sha256[:32]]
    assert len(watch.caused_by(request.meta.event_id, t.TrainingStarted)) == 1


def test_a_request_that_cannot_give_two_classes_fails_with_the_reason(trainer) -> None:
    _, _, publisher, watch = trainer
    request = t.TrainingRequested(meta=new_meta("test"), model="credit", reason="too small",
                                  requested_by="test", seed=7, max_rows=1)  # fmt: skip
    publisher.publish(request)
    publisher.flush()
    (failed,) = watch.wait_for(lambda _: watch.caused_by(request.meta.event_id, t.TrainingFailed))
    assert failed.stage == "validate"
    assert failed.reason.startswith("all 1 snapshot rows have label ")
    assert failed.meta.correlation_id == request.meta.correlation_id
    assert watch.caused_by(request.meta.event_id, t.ModelTrained) == []


def test_one_drift_episode_starts_one_job(trainer) -> None:
    _, _, publisher, watch = trainer
    first, second = (
        t.DriftDetected(meta=new_meta("monitor-test"), model="credit", version=None,
                        kind="covariate", evidence=[])
        for _ in range(2)
    )  # fmt: skip
    publisher.publish(first)
    publisher.publish(second)  # the same episode, a moment later
    publisher.flush()
    cause = first.meta.event_id
    (outcome,) = watch.wait_for(
        lambda _: watch.caused_by(cause, t.ModelTrained) or watch.caused_by(cause, t.TrainingFailed)
    )
    assert isinstance(outcome, t.ModelTrained), getattr(outcome, "reason", "")
    (started,) = watch.caused_by(cause, t.TrainingStarted)
    assert started.trigger == "DriftDetected"
    assert started.meta.correlation_id == first.meta.correlation_id
    assert watch.caused_by(second.meta.event_id, t.TrainingStarted) == []

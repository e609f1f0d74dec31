"""Trainer handlers, admission rules, snapshots and training, with fakes and no broker."""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from modelbus.data import file_sha256, generate_credit, write_reference
from modelbus.events import contract_path, load_contract
from modelbus.events import types as t
from modelbus.events.types import CodeVersion, DataSource
from modelbus.packaging import capture_environment, weights_sha256, write_package
from modelbus_trainer.bootstrap import JobPlanner
from modelbus_trainer.config import Settings
from modelbus_trainer.domain import TrainerState
from modelbus_trainer.handlers import (
    fail_interrupted,
    finish_job,
    observe_lifecycle,
    start_training,
)
from modelbus_trainer.job import run_job
from modelbus_trainer.snapshot import Slice, TrainingError, assemble, load_snapshot
from modelbus_trainer.spec import JobOutcome, JobSpec, TrainParams
from modelbus_trainer.training import fit_model, roc_auc
from tests.support.events import training_requested

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
PRODUCER = "trainer@test"


def meta(event_id: str, at: datetime = T0, correlation: str | None = None) -> t.EventMeta:
    return t.EventMeta(
        event_id=event_id,
        occurred_at=at,
        producer="test",
        correlation_id=correlation or f"corr-{event_id}",
        causation_id=None,
    )


def drift(event_id: str, at: datetime) -> t.DriftDetected:
    return t.DriftDetected(meta=meta(event_id, at), model="credit", version=1, kind="covariate",
                           evidence=[])  # fmt: skip


class FakeRunner:
    def __init__(self) -> None:
        self.specs: list[JobSpec] = []

    def submit(self, spec: JobSpec) -> None:
        self.specs.append(spec)

    def completed(self) -> list[JobOutcome]:
        return []

    def pending(self) -> int:
        return len(self.specs)

    def close(self) -> None:
        pass


@pytest.fixture
def state() -> TrainerState:
    return TrainerState(drift_cooldown_s=600, max_trigger_age_s=3600)


@pytest.fixture
def deps(state, tmp_path) -> dict:
    settings = Settings(run_dir=tmp_path / "run", repo_dir=tmp_path)
    return {
        "state": state,
        "runner": FakeRunner(),
        "plan_job": JobPlanner(settings),
        "producer": PRODUCER,
        "clock": lambda: T0 + timedelta(seconds=5),
    }


def test_a_request_starts_one_job_caused_by_it(deps) -> None:
    request = training_requested()
    (started,) = start_training(request, **deps)
    assert isinstance(started, t.TrainingStarted)
    assert (started.model, started.trigger) == ("credit", "TrainingRequested")
    assert started.meta.causation_id == "req-1"
    assert started.meta.correlation_id == "corr-req-1"
    assert started.meta.producer == PRODUCER
    (spec,) = deps["runner"].specs
    assert spec.job_id == started.job_id
    assert (spec.seed, spec.max_rows, spec.trigger_event_id) == (7, 100_000, "req-1")
    assert spec.reference_rows_cap is None
    assert spec.code == CodeVersion(git_sha="unknown", dirty=False)  # tmp_path is no checkout


def test_a_redelivered_request_starts_nothing(deps) -> None:
    request = training_requested()
    assert len(start_training(request, **deps)) == 1
    assert start_training(request, **deps) == []
    assert len(deps["runner"].specs) == 1


def test_a_request_answered_before_a_restart_starts_nothing(deps, state) -> None:
    earlier = t.TrainingStarted(
        meta=dataclasses.replace(meta("started-1"), causation_id="req-1"),
        model="credit", job_id="credit-old", trigger="TrainingRequested",
    )  # fmt: skip
    observe_lifecycle(earlier, state)
    observe_lifecycle(
        t.TrainingFailed(meta=meta("f-1"), model="credit", job_id="credit-old", stage="train",
                         reason="x"), state,
    )  # fmt: skip
    assert start_training(training_requested(), **deps) == []


def test_a_stale_request_is_skipped(deps) -> None:
    old = training_requested(at=T0 - timedelta(hours=2))
    assert start_training(old, **deps) == []


def test_one_drift_episode_starts_one_job(deps, state) -> None:
    (first,) = start_training(drift("d-1", T0), **deps)
    # Same episode while the job runs, and within the cool-down after it ended.
    assert start_training(drift("d-2", T0 + timedelta(seconds=30)), **deps) == []
    observe_lifecycle(_job_ended(first.job_id), state)
    assert start_training(drift("d-3", T0 + timedelta(seconds=599)), **deps) == []
    assert start_training(drift("d-1", T0), **deps) == []  # redelivery
    (second,) = start_training(drift("d-4", T0 + timedelta(seconds=600)), **deps)
    assert second.trigger == "DriftDetected"
    assert second.meta.causation_id == "d-4"
    assert [spec.trigger_event_id for spec in deps["runner"].specs] == ["d-1", "d-4"]
    # After drift, recent labelled rows should outweigh the (maybe stale) reference concept.
    assert [spec.reference_rows_cap for spec in deps["runner"].specs] == [2000, 2000]


def test_an_explicit_request_is_not_held_back_by_the_drift_cool_down(deps) -> None:
    assert len(start_training(drift("d-1", T0), **deps)) == 1
    assert len(start_training(training_requested("req-9"), **deps)) == 1


def _job_ended(job_id: str) -> t.TrainingFailed:
    return t.TrainingFailed(meta=meta(f"end-{job_id}"), model="credit", job_id=job_id,
                            stage="train", reason="done")  # fmt: skip


@pytest.mark.parametrize(
    ("events", "parent"),
    [
        ([], None),
        ([("registered", 1), ("registered", 2)], 2),
        ([("registered", 1), ("registered", 2), ("promoted", 1)], 1),
        ([("promoted", 1), ("promoted", 3), ("rolled_back", 1)], 1),
    ],
)
def test_parent_version_follows_the_lifecycle_log(state, events, parent) -> None:
    for kind, version in events:
        if kind == "registered":
            event = t.ModelRegistered(meta=meta(f"r{version}"), model="credit", version=version,
                                      run_id="r", artifact_uri="/x", artifact_sha256="0" * 64,
                                      metrics={}, parent_version=None)  # fmt: skip
        elif kind == "promoted":
            event = t.ModelPromoted(meta=meta(f"p{version}"), model="credit", version=version,
                                    previous_version=None, reason="canary passed")  # fmt: skip
        else:
            event = t.ModelRolledBack(meta=meta(f"b{version}"), model="credit", version=3,
                                      restored_version=version, reason="bad canary")  # fmt: skip
        observe_lifecycle(event, state)
    assert state.parent_version("credit") == parent


def _outcome(job_id: str, *, ok: bool = True) -> JobOutcome:
    from modelbus.events.types import DataLineage

    lineage = DataLineage(
        snapshot_sha256="a" * 64,
        rows=10,
        sources=[DataSource(kind="file", uri="/ref.jsonl", rows=10, sha256="b" * 64)],
    )
    if not ok:
        return JobOutcome(job_id=job_id, model="credit", ok=False, stage="validate",
                          reason="all 10 snapshot rows have label 1", parent_version=4)  # fmt: skip
    return JobOutcome(
        job_id=job_id, model="credit", ok=True, run_id="run-1", artifact_uri="/pkg",
        artifact_sha256="c" * 64, contract_fingerprint="c4299d1340c5c59a",
        metrics={"accuracy": 0.9}, params={"seed": "7"}, lineage=lineage,
        environment=capture_environment(), code=CodeVersion(git_sha="abc", dirty=True),
        parent_version=4,
    )  # fmt: skip


def test_a_finished_job_becomes_model_trained_caused_by_the_trigger(deps, state) -> None:
    (started,) = start_training(training_requested(), **deps)
    (trained,) = finish_job(_outcome(started.job_id), state, PRODUCER)
    assert isinstance(trained, t.ModelTrained)
    assert trained.meta.causation_id == "req-1"
    assert trained.meta.correlation_id == "corr-req-1"
    assert (trained.job_id, trained.run_id, trained.artifact_uri) == (
        started.job_id,
        "run-1",
        "/pkg",
    )
    assert trained.artifact_sha256 == "c" * 64
    assert trained.data.sources[0].uri == "/ref.jsonl"
    assert trained.code == CodeVersion(git_sha="abc", dirty=True)
    assert trained.parent_version == 4
    assert state.running == {}


def test_a_failed_job_becomes_training_failed_with_its_reason(deps, state) -> None:
    (started,) = start_training(training_requested(), **deps)
    (failed,) = finish_job(_outcome(started.job_id, ok=False), state, PRODUCER)
    assert isinstance(failed, t.TrainingFailed)
    assert (failed.stage, failed.reason) == ("validate", "all 10 snapshot rows have label 1")
    assert failed.meta.causation_id == "req-1"


def test_jobs_interrupted_by_a_restart_are_reported_failed(state) -> None:
    started = t.TrainingStarted(
        meta=dataclasses.replace(meta("s-1", correlation="loop-1"), causation_id="req-1"),
        model="credit", job_id="credit-abc", trigger="TrainingRequested",
    )  # fmt: skip
    observe_lifecycle(started, state)
    (failed,) = fail_interrupted(state, PRODUCER)
    assert (failed.job_id, failed.stage) == ("credit-abc", "train")
    assert failed.reason.startswith("the trainer stopped while this job ran")
    assert (failed.meta.causation_id, failed.meta.correlation_id) == ("req-1", "loop-1")
    assert fail_interrupted(state, PRODUCER) == []


# --- snapshots -------------------------------------------------------------------------------


def credit_contract() -> dict:
    return load_contract("credit")


def file_slice(rows, labels, uri="/ref.jsonl") -> Slice:
    source = DataSource(kind="file", uri=uri, rows=len(rows), sha256="f" * 64)
    return Slice(rows=rows, labels=labels, source=source)


def test_a_snapshot_keeps_the_newest_rows_and_is_stored_under_its_sha256(tmp_path) -> None:
    rows, labels = generate_credit(30, seed=1)
    production = Slice(
        rows=rows[20:], labels=labels[20:],
        source=DataSource(kind="topic", uri="modelbus.credit.requests", partition=2,
                          start_offset=100, end_offset=140, rows=10),
    )  # fmt: skip
    snapshot = assemble(
        [file_slice(rows[:20], labels[:20]), production], credit_contract(),
        max_rows=25, min_rows=2, snapshot_dir=tmp_path, where_to_look="",
    )  # fmt: skip
    assert snapshot.lineage.rows == 25
    assert [source.rows for source in snapshot.lineage.sources] == [15, 10]
    assert snapshot.lineage.sources[1].start_offset == 100
    assert snapshot.rows == rows[5:]
    assert snapshot.path == tmp_path / f"{snapshot.sha256}.jsonl"
    assert hashlib.sha256(snapshot.path.read_bytes()).hexdigest() == snapshot.sha256
    assert load_snapshot(snapshot.path) == (rows[5:], labels[5:], snapshot.sha256)


def test_a_capped_reference_slice_keeps_the_last_rows_of_the_file(tmp_path) -> None:
    from modelbus_trainer.sources import reference_slice

    path = tmp_path / "credit-reference.jsonl"
    full = reference_slice(path, n_rows=50, seed=3)
    capped = reference_slice(path, n_rows=50, seed=3, keep_last=20)
    assert (full.source.rows, capped.source.rows) == (50, 20)
    assert capped.rows == full.rows[30:]
    assert capped.source.sha256 == full.source.sha256 == file_sha256(path)


def test_an_empty_snapshot_fails_with_what_to_do(tmp_path) -> None:
    with pytest.raises(TrainingError) as caught:
        assemble([], credit_contract(), max_rows=10, min_rows=2, snapshot_dir=tmp_path,
                 where_to_look="no reference rows")  # fmt: skip
    assert caught.value.stage == "snapshot"
    assert caught.value.reason.startswith("the snapshot is empty: no reference rows.")


def test_single_class_data_fails_with_what_to_do(tmp_path) -> None:
    rows, _ = generate_credit(12, seed=1)
    with pytest.raises(TrainingError) as caught:
        assemble([file_slice(rows, [1] * 12)], credit_contract(), max_rows=100, min_rows=2,
                 snapshot_dir=tmp_path, where_to_look="")  # fmt: skip
    assert caught.value.stage == "validate"
    assert caught.value.reason.startswith("all 12 snapshot rows have label 1; a classifier")


def test_rows_that_break_the_contract_fail_naming_the_field(tmp_path) -> None:
    rows, labels = generate_credit(5, seed=1)
    del rows[3]["hyears"]
    with pytest.raises(TrainingError) as caught:
        assemble([file_slice(rows, labels)], credit_contract(), max_rows=100, min_rows=2,
                 snapshot_dir=tmp_path, where_to_look="")  # fmt: skip
    assert caught.value.stage == "validate"
    assert caught.value.reason.startswith("contract mismatch: row 3 of /ref.jsonl lacks ['hyears']")


def test_a_run_on_broken_reference_data_reports_a_contract_mismatch(tmp_path) -> None:
    rows, labels = generate_credit(200, seed=1)
    for row in rows:
        row["salary"] = "high"
    settings = Settings(run_dir=tmp_path, reference_rows=200, production_rows=0, repo_dir=tmp_path)
    write_reference(settings.reference_path("credit"), rows, labels)
    spec = JobPlanner(settings, read_production=False)(training_requested(), None)
    outcome = run_job(spec)
    assert (outcome.ok, outcome.stage) == (False, "validate")
    assert outcome.reason == (
        "contract mismatch: row 0 of "
        f"{settings.reference_path('credit').resolve()} has salary='high', "
        "but the contract says double"
    )


# --- training --------------------------------------------------------------------------------


def test_roc_auc_matches_hand_computed_values() -> None:
    assert roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == 0.75
    assert roc_auc(np.array([0, 1]), np.array([0.5, 0.5])) == 0.5
    assert roc_auc(np.array([1, 0, 1]), np.array([0.9, 0.2, 0.7])) == 1.0


def _package(directory: Path, rows, labels, seed: int) -> str:
    contract = credit_contract()
    fit = fit_model(rows, labels, contract, TrainParams(hidden=(16,), epochs=2), seed=seed)
    write_package(directory, name="credit", contract=contract, preprocessor=fit.preprocessor,
                  runtime="torch-mlp", weights=fit.trained.weights(),
                  architecture=fit.trained.architecture, profile=fit.profile,
                  metrics=fit.metrics)  # fmt: skip
    return weights_sha256(directory)


def test_retraining_the_same_snapshot_with_the_same_seed_gives_the_same_weights(tmp_path) -> None:
    rows, labels = generate_credit(1_500, seed=4)
    first = _package(tmp_path / "a", rows, labels, seed=7)
    again = _package(tmp_path / "b", rows, labels, seed=7)
    other_seed = _package(tmp_path / "c", rows, labels, seed=8)
    assert first == again
    assert first != other_seed


def test_holdout_metrics_are_exact_for_a_fixed_seed() -> None:
    rows, labels = generate_credit(1_500, seed=4)
    fit = fit_model(rows, labels, credit_contract(), TrainParams(hidden=(16,), epochs=2), seed=7)
    assert (fit.metrics["train_rows"], fit.metrics["holdout_rows"]) == (1200.0, 300.0)
    assert set(fit.metrics) == {"accuracy", "roc_auc", "log_loss", "train_loss", "train_rows",
                                "holdout_rows"}  # fmt: skip
    again = fit_model(rows, labels, credit_contract(), TrainParams(hidden=(16,), epochs=2), seed=7)
    assert again.metrics == fit.metrics


def test_a_diverging_loss_fails_the_train_stage() -> None:
    rows, labels = generate_credit(600, seed=4)
    params = TrainParams(hidden=(16,), epochs=3, learning_rate=1e30)
    with pytest.raises(TrainingError) as caught:
        fit_model(rows, labels, credit_contract(), params, seed=7)
    assert caught.value.stage == "train"
    assert "lower learning_rate (now 1e+30)" in caught.value.reason


def test_a_model_without_a_data_contract_fails_validation_saying_where_it_should_be(
    tmp_path,
) -> None:
    settings = Settings(run_dir=tmp_path, production_rows=0, repo_dir=tmp_path)
    request = dataclasses.replace(training_requested(), model="nosuchmodel")
    outcome = run_job(JobPlanner(settings, read_production=False)(request, None))
    assert (outcome.ok, outcome.stage, outcome.model) == (False, "validate", "nosuchmodel")
    assert outcome.reason == (
        f"model 'nosuchmodel' has no data contract: expected {contract_path('nosuchmodel')}; "
        "add it first"
    )


def test_settings_refuse_an_unknown_worker_kind() -> None:
    with pytest.raises(ValueError, match="worker must be 'process' or 'inline', not 'thread'"):
        Settings(worker="thread")

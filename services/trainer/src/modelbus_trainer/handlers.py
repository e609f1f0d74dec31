"""The trainer's handlers: plain functions (event, dependencies) -> events to publish."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime

import structlog

from modelbus.events import new_meta
from modelbus.events import types as t
from modelbus_trainer.domain import TrainerState, Trigger
from modelbus_trainer.spec import JobOutcome, JobRunner, JobSpec

log = structlog.get_logger(__name__)

PlanJob = Callable[[Trigger, int | None], JobSpec]
Clock = Callable[[], datetime]


def observe_lifecycle(event: object, state: TrainerState) -> list[object]:
    """Fold champions, registrations and jobs (including this trainer's own) into the state."""
    state.observe(event)
    return []


def start_training(
    event: Trigger,
    state: TrainerState,
    runner: JobRunner,
    plan_job: PlanJob,
    producer: str,
    clock: Clock,
) -> list[t.TrainingStarted]:
    """Someone asked for training, or drift was seen: start a job unless the state refuses.

    A request already answered is not trained twice; a drift is trained on once per episode
    (cool-down and de-duplication per model). The refusal's reason is logged.
    """
    admission = state.admit(event, now=clock())
    trigger = type(event).__name__
    if not admission.accepted:
        log.info("trigger skipped", model=event.model, trigger=trigger, reason=admission.reason)
        return []
    spec = plan_job(event, state.parent_version(event.model))
    started = t.TrainingStarted(
        meta=new_meta(producer, cause=event), model=event.model, job_id=spec.job_id, trigger=trigger
    )
    state.observe(started)
    runner.submit(spec)
    log.info("training started", model=event.model, job_id=spec.job_id, trigger=trigger)
    return [started]


def _meta_of_job(started: t.TrainingStarted | None, producer: str) -> t.EventMeta:
    if started is None:
        return new_meta(producer)
    # Caused by the job's trigger, like TrainingStarted, and in the same loop (correlation).
    meta = new_meta(producer, correlation_id=started.meta.correlation_id)
    return dataclasses.replace(meta, causation_id=started.meta.causation_id)


def finish_job(
    outcome: JobOutcome, state: TrainerState, producer: str
) -> list[t.ModelTrained | t.TrainingFailed]:
    """A job ended: ModelTrained with its lineage, or TrainingFailed with the reason."""
    meta = _meta_of_job(state.running.get(outcome.job_id), producer)
    result: t.ModelTrained | t.TrainingFailed
    if outcome.ok:
        assert outcome.lineage is not None
        assert outcome.environment is not None
        assert outcome.code is not None
        result = t.ModelTrained(
            meta=meta,
            model=outcome.model,
            job_id=outcome.job_id,
            run_id=outcome.run_id,
            artifact_uri=outcome.artifact_uri,
            artifact_sha256=outcome.artifact_sha256,
            contract_fingerprint=outcome.contract_fingerprint,
            metrics=outcome.metrics,
            params=outcome.params,
            data=outcome.lineage,
            code=outcome.code,
            environment=outcome.environment,
            parent_version=outcome.parent_version,
        )
    else:
        result = t.TrainingFailed(
            meta=meta,
            model=outcome.model,
            job_id=outcome.job_id,
            stage=outcome.stage,
            reason=outcome.reason,
        )
    state.observe(result)
    return [result]


def fail_interrupted(state: TrainerState, producer: str) -> list[t.TrainingFailed]:
    """Jobs the log shows started but never ended: the trainer stopped; say so and free them."""
    failed = []
    for started in state.interrupted_jobs():
        event = t.TrainingFailed(
            meta=_meta_of_job(started, producer),
            model=started.model,
            job_id=started.job_id,
            stage="train",
            reason="the trainer stopped while this job ran; send a new TrainingRequested "
            "to train again",
        )
        state.observe(event)
        failed.append(event)
    return failed


EVENT_HANDLERS: dict[type, list[Callable[..., list]]] = {
    t.TrainingRequested: [start_training],
    t.DriftDetected: [start_training],
    t.TrainingStarted: [observe_lifecycle],
    t.ModelTrained: [observe_lifecycle],
    t.TrainingFailed: [observe_lifecycle],
    t.ModelRegistered: [observe_lifecycle],
    t.ModelPromoted: [observe_lifecycle],
    t.ModelRolledBack: [observe_lifecycle],
}

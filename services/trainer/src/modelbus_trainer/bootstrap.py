"""Wiring: adapters into handlers and the service loop; ``catch_up`` replays the lifecycle."""

from __future__ import annotations

import subprocess
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import structlog

from modelbus.bus import (
    LIFECYCLE_TOPIC,
    ConsumerLoop,
    Dispatcher,
    Publisher,
    kafka_schema_store,
)
from modelbus.bus.envelope import Envelope
from modelbus.bus.reading import read_topic
from modelbus.events import Codec, CodecError, GenericRecord, build_codec
from modelbus.events import types as t
from modelbus.events.meta import producer_id
from modelbus.events.types import CodeVersion
from modelbus.service import inject
from modelbus.trust import TrustedKeys, check_event, load_signer, load_trusted
from modelbus_trainer.config import Settings
from modelbus_trainer.domain import TrainerState, Trigger
from modelbus_trainer.handlers import EVENT_HANDLERS, fail_interrupted, finish_job
from modelbus_trainer.runner import InlineJobRunner, ProcessJobRunner
from modelbus_trainer.spec import JobRunner, JobSpec, TrainParams

log = structlog.get_logger(__name__)


def code_version(repo_dir: Path) -> CodeVersion:
    """Commit and dirty flag of the checkout (tracked files only), or 'unknown' outside git."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo_dir, capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo_dir, capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return CodeVersion(git_sha="unknown", dirty=False)
    return CodeVersion(git_sha=sha, dirty=bool(status.strip()))


def train_params(settings: Settings) -> TrainParams:
    """Hyper-parameters from settings."""
    return TrainParams(
        hidden=tuple(settings.hidden),
        epochs=settings.epochs,
        batch_size=settings.batch_size,
        learning_rate=settings.learning_rate,
        weight_decay=settings.weight_decay,
        holdout_fraction=settings.holdout_fraction,
        threads=settings.train_threads,
    )


class JobPlanner:
    """Turns an admitted trigger into a JobSpec (seed and row cap from the request if given)."""

    def __init__(self, settings: Settings, *, read_production: bool = True) -> None:
        self.settings = settings
        self.read_production = read_production

    def __call__(self, event: Trigger, parent_version: int | None) -> JobSpec:
        """The job for ``event``."""
        seed = getattr(event, "seed", None)
        max_rows = getattr(event, "max_rows", None)
        return JobSpec(
            job_id=f"{event.model}-{uuid.uuid4().hex[:12]}",
            model=event.model,
            seed=self.settings.seed if seed is None else int(seed),
            max_rows=self.settings.max_rows if max_rows is None else int(max_rows),
            params=train_params(self.settings),
            settings=self.settings,
            code=code_version(self.settings.repo_dir),
            trigger=type(event).__name__,
            trigger_event_id=event.meta.event_id,
            correlation_id=event.meta.correlation_id,
            parent_version=parent_version,
            read_production=self.read_production,
            # After drift the old concept may be wrong: let recent labelled rows dominate.
            reference_rows_cap=(
                self.settings.drift_reference_rows if isinstance(event, t.DriftDetected) else None
            ),
            onset_offsets=tuple((o.partition, o.offset) for o in event.onset_offsets)
            if isinstance(event, t.DriftDetected)
            else (),
            onset_at_ms=int(event.onset_at.timestamp() * 1000)
            if isinstance(event, t.DriftDetected) and event.onset_at is not None
            else None,
            corrupt_labels_where=event.corrupt_labels_where
            if isinstance(event, t.TrainingRequested)
            else None,
        )


def replay_lifecycle(
    bootstrap_servers: str, codec: Codec, state: TrainerState, trusted: TrustedKeys | None = None
) -> int:
    """Fold the whole lifecycle log, up to its current end, into ``state``; returns events read.

    An event not signed by a role allowed to publish it (``trusted``: MODELBUS_TRUSTED_KEYS by
    default) is skipped; live, the dispatcher dead-letters it.
    """
    trusted = trusted or load_trusted()
    envelopes = read_topic(
        bootstrap_servers, LIFECYCLE_TOPIC, timeout_s=60.0, purpose="trainer-replay"
    )
    count = 0
    for envelope in envelopes:
        try:
            event = codec.decode(envelope.value or b"", where=envelope.where)
        except CodecError as error:
            _skip_undecodable(envelope, error)
            continue
        count += 1
        if isinstance(event, GenericRecord):
            continue
        value = envelope.value or b""
        refused = check_event(event.SCHEMA_NAME, envelope.topic, value, envelope.headers, trusted)
        if refused is not None:
            log.warning("replay skips an event", where=envelope.where, reason=refused.reason)
            continue
        state.observe(event)
    return count


def _skip_undecodable(envelope: Envelope, error: CodecError) -> None:
    log.warning("replay skips an undecodable event", where=envelope.where, error=str(error))


def utc_now() -> datetime:
    """The clock handlers see."""
    return datetime.now(UTC)


@dataclass
class TrainerApp:
    """The running trainer: a consumer loop on the lifecycle log plus a job runner."""

    settings: Settings
    state: TrainerState
    runner: JobRunner
    publisher: Publisher
    loop: ConsumerLoop
    producer: str
    codec: Codec
    trusted: TrustedKeys

    def catch_up(self) -> int:
        """Before ``run``: publish the schemas, fold the lifecycle log into the state, and
        fail the jobs it shows started but never ended; returns lifecycle events read."""
        self.publisher.publish_all_schemas()
        replayed = replay_lifecycle(
            self.settings.kafka.bootstrap_servers, self.codec, self.state, self.trusted
        )
        for event in fail_interrupted(self.state, self.producer):
            self.publisher.publish(event)
        self.publisher.flush()
        log.info("lifecycle replayed", events=replayed, champions=self.state.champion)
        return replayed

    def step(self, timeout_s: float = 0.5) -> None:
        """Consume one batch, then publish the outcome of every job that finished."""
        self.loop.poll_once(timeout_s)
        self.publish_finished()

    def publish_finished(self) -> int:
        """Publish ModelTrained/TrainingFailed for finished jobs; returns how many."""
        outcomes = self.runner.completed()
        for outcome in outcomes:
            for event in finish_job(outcome, self.state, self.producer):
                self.publisher.publish(event)
        if outcomes:
            self.publisher.flush()
        return len(outcomes)

    def run(self, stop: threading.Event) -> None:
        """Until ``stop`` is set; then let the running job end and publish its outcome."""
        log.info("trainer consuming", topic=LIFECYCLE_TOPIC, group_id=self.settings.group_id)
        try:
            while not stop.is_set():
                self.step()
        finally:
            log.info("trainer stopping", jobs_pending=self.runner.pending())
            self.runner.close()
            self.publish_finished()
            self.loop.close()


def bootstrap(settings: Settings, *, runner: JobRunner | None = None) -> TrainerApp:
    """Codec, publisher, empty state, job runner, handlers, loop: built and wired, nothing sent.

    ``catch_up`` then ``run`` start it (``python -m modelbus_trainer run`` does both).
    """
    kafka = settings.kafka
    producer = producer_id("trainer")
    codec = build_codec(kafka_schema_store(kafka.bootstrap_servers), models=tuple(kafka.models))
    # Refuse to start without keys: the trainer signs ModelTrained and every package, and
    # acts only on correctly signed requests, drift alerts and lifecycle events.
    trusted = load_trusted()
    publisher = Publisher(kafka, codec, client_id=producer, signer=load_signer("trainer"))
    state = TrainerState(
        drift_cooldown_s=settings.drift_cooldown_s,
        max_trigger_age_s=settings.max_trigger_age_s,
        models_pattern=settings.models_pattern,
    )
    if runner is None:
        runner = ProcessJobRunner() if settings.worker == "process" else InlineJobRunner()
    handlers = inject(
        EVENT_HANDLERS,
        {
            "state": state,
            "runner": runner,
            "plan_job": JobPlanner(settings),
            "producer": producer,
            "clock": utc_now,
        },
    )
    loop = ConsumerLoop(
        kafka,
        group_id=settings.group_id,
        topics=[LIFECYCLE_TOPIC],
        dispatcher=Dispatcher(codec, handlers, producer=producer, trusted=trusted),
        publisher=publisher,
        from_beginning=True,
    )
    return TrainerApp(settings, state, runner, publisher, loop, producer, codec, trusted)

"""What a training job is, as plain data: no torch, no Kafka (handlers import only this).

The job itself runs in ``job.py``; ``runner.py`` runs jobs off the consumer loop.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Protocol

from modelbus.events.types import CodeVersion, DataLineage, Environment
from modelbus_trainer.config import Settings


@dataclass(frozen=True, slots=True)
class TrainParams:
    """Hyper-parameters of one training run."""

    hidden: tuple[int, ...] = (64, 32)
    activation: str = "relu"
    epochs: int = 8
    batch_size: int = 256
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    holdout_fraction: float = 0.2
    threads: int = 1

    def as_strings(self) -> dict[str, str]:
        """For MLflow and ModelTrained.params."""
        values = asdict(self)
        values["hidden"] = ",".join(map(str, self.hidden))
        return {key: str(value) for key, value in values.items()} | {"optimizer": "adam"}


@dataclass(frozen=True)
class JobSpec:
    """What to train, with what, and why (plain data: it crosses into the worker process)."""

    job_id: str
    model: str
    seed: int
    max_rows: int
    params: TrainParams
    settings: Settings
    code: CodeVersion
    trigger: str
    trigger_event_id: str
    correlation_id: str
    parent_version: int | None = None
    read_production: bool = True
    reference_rows_cap: int | None = None
    onset_offsets: tuple[tuple[int, int], ...] = ()
    """(partition, first request offset after the drift's onset), from DriftDetected."""
    onset_at_ms: int | None = None
    corrupt_labels_where: str | None = None
    """Demo and testing only: flip the labels of training rows where 'feature=value'."""


@dataclass
class JobOutcome:
    """A finished job: the model it made, or the stage and reason it failed at."""

    job_id: str
    model: str
    ok: bool
    stage: str = ""
    reason: str = ""
    run_id: str = ""
    model_uri: str = ""
    artifact_uri: str = ""
    artifact_sha256: str = ""
    weights_sha256: str = ""
    contract_fingerprint: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    lineage: DataLineage | None = None
    environment: Environment | None = None
    code: CodeVersion | None = None
    parent_version: int | None = None
    wall_s: float = 0.0


class JobRunner(Protocol):
    """Takes job specs; finished jobs come back from ``completed``."""

    def submit(self, spec: JobSpec) -> None: ...

    def completed(self) -> list[JobOutcome]: ...

    def pending(self) -> int: ...

    def close(self) -> None: ...

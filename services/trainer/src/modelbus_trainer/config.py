"""Settings of the trainer service."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from modelbus.config import KafkaSettings


class Settings(BaseSettings):
    """trainer settings (env prefix ``MODELBUS_TRAINER_``; the broker's: ``MODELBUS_``)."""

    model_config = SettingsConfigDict(
        env_prefix="MODELBUS_TRAINER_", extra="ignore", populate_by_name=True
    )

    kafka: KafkaSettings = Field(default_factory=KafkaSettings, description="Broker and topics.")
    group_id: str = Field(default="modelbus-trainer", description="Kafka consumer group.")
    models_pattern: str = Field(
        default=r"[^.]+",
        description="Regular expression (full match) of the model names this trainer trains; "
        "triggers and unfinished jobs of other models are left to their own trainer.",
    )
    run_dir: Path = Field(
        default=Path(".run"),
        description="Working folder: reference data, content-addressed snapshots, packages.",
    )
    mlflow_tracking_uri: str = Field(
        default="sqlite:///.run/mlflow.db",
        validation_alias=AliasChoices(
            "MODELBUS_TRAINER_MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_URI", "mlflow_tracking_uri"
        ),
        description="MLflow tracking URI; MLFLOW_TRACKING_URI overrides.",
    )
    mlflow_artifact_root: Path = Field(
        default=Path(".run/mlartifacts"),
        description="Artifact folder of the experiments the trainer creates (local files).",
    )
    experiment_prefix: str = Field(
        default="modelbus-", description="MLflow experiment of model M is <prefix>M."
    )
    reference_rows: int = Field(
        default=20_000, ge=0, description="Rows of generated reference data per model."
    )
    reference_seed: int = Field(default=42, description="Seed of the generated reference data.")
    drift_reference_rows: int = Field(
        default=2_000,
        ge=0,
        description="Jobs started by DriftDetected keep only this many (of the newest) "
        "reference rows, so recent labelled requests outweigh a concept that may be stale.",
    )
    min_post_drift_rows: int = Field(
        default=1_000,
        ge=1,
        description="A job started by DriftDetected trains on the labelled requests after the "
        "onset; with fewer than this, the newest older rows are added (never more than the "
        "new ones).",
    )
    drift_data_wait_s: float = Field(
        default=120.0,
        ge=0,
        description="How long a drift job waits for min_post_drift_rows labelled requests "
        "after the onset before it trains on what there is.",
    )
    production_rows: int = Field(
        default=50_000,
        ge=0,
        description="At most this many recent requests (per partition) joined with feedback.",
    )
    max_rows: int = Field(
        default=100_000,
        ge=1,
        description="Snapshot size cap when TrainingRequested.max_rows is null; the most recent "
        "rows are kept (production rows come after reference rows).",
    )
    min_rows: int = Field(
        default=100, ge=2, description="Fewer snapshot rows than this fails the job."
    )
    seed: int = Field(default=42, description="Seed when TrainingRequested.seed is null.")
    hidden: list[int] = Field(default=[64, 32], description="Hidden layer widths of the MLP.")
    epochs: int = Field(default=8, ge=1, description="Passes over the training split.")
    batch_size: int = Field(default=256, ge=1, description="Rows per optimiser step.")
    learning_rate: float = Field(default=1e-3, gt=0, description="Adam learning rate.")
    weight_decay: float = Field(default=0.0, ge=0, description="Adam weight decay.")
    holdout_fraction: float = Field(
        default=0.2, gt=0, lt=1, description="Share of each class held out for evaluation."
    )
    train_threads: int = Field(
        default=1,
        ge=1,
        description="torch threads of the training worker; fixed so results are reproducible.",
    )
    drift_cooldown_s: float = Field(
        default=600.0,
        ge=0,
        description="DriftDetected events for a model within this long of the one that "
        "started a job are the same drift episode and start no new job.",
    )
    max_trigger_age_s: float = Field(
        default=24 * 3600.0,
        gt=0,
        description="Triggers older than this when read (a long outage, a replay) are skipped.",
    )
    kafka_read_timeout_s: float = Field(
        default=30.0, gt=0, description="Deadline to read request/feedback offset ranges."
    )
    worker: str = Field(
        default="process",
        description="'process' trains in a worker process (the service); 'inline' in the "
        "calling thread (tests, one-off CLI runs).",
    )
    repo_dir: Path = Field(
        default=Path("."), description="Git checkout whose commit and dirty flag are recorded."
    )

    @field_validator("worker")
    @classmethod
    def _known_worker(cls, value: str) -> str:
        if value not in ("process", "inline"):
            raise ValueError(f"worker must be 'process' or 'inline', not {value!r}")
        return value

    @field_validator("hidden")
    @classmethod
    def _positive_widths(cls, value: list[int]) -> list[int]:
        if not value or any(width < 1 for width in value):
            raise ValueError(f"hidden must list positive layer widths, got {value}")
        return value

    def reference_path(self, model: str) -> Path:
        """Where the model's generated reference data lives."""
        return self.run_dir / "data" / f"{model}-reference.jsonl"

    def experiment(self, model: str) -> str:
        """MLflow experiment name of a model."""
        return f"{self.experiment_prefix}{model}"

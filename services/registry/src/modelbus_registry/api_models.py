"""Request and response bodies of the REST API (they document themselves in OpenAPI)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from modelbus_registry.db import AliasChange, ModelVersion, RegistrationFailure

MAX_VERSION = 2**31 - 1  # versions are Avro ints
MAX_SEED = 2**32 - 1  # the widest seed every library the trainer seeds accepts
MAX_ROWS = 10**9
MAX_TEXT = 2_000
MAX_NAME = 200


class ModelOut(BaseModel):
    """A model, its versions and its aliases."""

    name: str
    versions: list[int]
    latest_version: int
    champion: int | None = Field(description="Version serving most traffic; null before any.")
    canary: int | None = Field(description="Version under canary test; null when none.")


class VersionOut(BaseModel):
    """One registered version."""

    model: str
    version: int
    run_id: str
    job_id: str
    artifact_uri: str
    artifact_sha256: str = Field(description="sha256 of the package's manifest.json.")
    metrics: dict[str, float]
    parent_version: int | None
    registered_at: datetime
    mlflow_version: int | None = Field(description="The mirrored MLflow model version.")

    @classmethod
    def of(cls, row: ModelVersion) -> VersionOut:
        """From a row."""
        return cls.model_validate(row.model_dump())


class LineageOut(BaseModel):
    """Everything needed to trust and reproduce a version."""

    model: str
    version: int
    run_id: str
    job_id: str
    parent_version: int | None
    contract_fingerprint: str
    metrics: dict[str, float]
    params: dict[str, str]
    data: dict[str, Any] = Field(description="Snapshot sha256, rows, and every source slice.")
    code: dict[str, Any] = Field(description="git sha and dirty flag.")
    environment: dict[str, Any] = Field(description="Python, platform, uv.lock sha256, packages.")
    causation_event_id: str = Field(description="The ModelTrained event that caused it.")
    correlation_id: str
    registered_event_id: str

    @classmethod
    def of(cls, row: ModelVersion) -> LineageOut:
        """From a row."""
        return cls(
            **row.model_dump(include=set(cls.model_fields) - {"data", "causation_event_id"}),
            data=row.data_lineage,
            causation_event_id=row.trained_event_id,
        )


class AliasesOut(BaseModel):
    """Current aliases of a model."""

    model: str
    champion: int | None
    canary: int | None


class AliasVersionOut(BaseModel):
    """The version an alias named at a time."""

    model: str
    alias: str
    at: datetime | None = Field(description="The time asked about; null means now.")
    version: int | None = Field(description="null: the alias named no version then.")


class AliasChangeOut(BaseModel):
    """One move of an alias."""

    alias: str
    version: int | None
    changed_at: datetime
    event_type: str
    event_id: str
    reason: str

    @classmethod
    def of(cls, change: AliasChange) -> AliasChangeOut:
        """From a row."""
        return cls.model_validate(change.model_dump())


class FailureOut(BaseModel):
    """A refused registration."""

    model: str
    run_id: str
    artifact_uri: str
    reason: str
    trained_event_id: str
    failed_event_id: str
    failed_at: datetime

    @classmethod
    def of(cls, failure: RegistrationFailure) -> FailureOut:
        """From a row."""
        return cls.model_validate(failure.model_dump())


class RollbackIn(BaseModel):
    """Roll a model back."""

    to_version: int | None = Field(
        default=None,
        ge=1,
        le=MAX_VERSION,
        description="Version to serve; the previous champion when null.",
    )
    reason: str = Field(min_length=1, max_length=MAX_TEXT, description="Why, for the audit log.")
    requested_by: str = Field(
        default="api", min_length=1, max_length=MAX_NAME, description="Who asks."
    )


class PromotionIn(BaseModel):
    """Promote a version to champion now."""

    version: int = Field(ge=1, le=MAX_VERSION, description="Version to promote.")
    reason: str = Field(min_length=1, max_length=MAX_TEXT, description="Why, for the audit log.")
    requested_by: str = Field(
        default="api", min_length=1, max_length=MAX_NAME, description="Who asks."
    )


class TrainingIn(BaseModel):
    """Train a new version."""

    reason: str = Field(min_length=1, max_length=MAX_TEXT, description="Why, for the audit log.")
    requested_by: str = Field(
        default="api", min_length=1, max_length=MAX_NAME, description="Who asks."
    )
    seed: int | None = Field(
        default=None,
        ge=0,
        le=MAX_SEED,
        description="Training seed (0 to 2^32-1); the trainer's default when null.",
    )
    max_rows: int | None = Field(
        default=None, ge=1, le=MAX_ROWS, description="Cap on training rows."
    )


class RequestedOut(BaseModel):
    """The event a write endpoint published."""

    event_type: str
    event_id: str
    correlation_id: str

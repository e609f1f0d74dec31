"""Tables of the registry (SQLModel) and the engine: SQLite by default, PostgreSQL by URL."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, Column, DateTime, UniqueConstraint, event
from sqlalchemy.engine import Dialect, Engine, make_url
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel, create_engine


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps stored as naive UTC and read back aware, the same on SQLite and PostgreSQL."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: give a timezone")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None else None


def _utc_column(**kwargs: Any) -> Any:
    return Field(sa_column=Column(UTCDateTime(), nullable=False, **kwargs))


def _json_column() -> Any:
    return Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class ModelVersion(SQLModel, table=True):
    """One registered version of a model, with everything needed to trust and reproduce it."""

    __tablename__ = "model_version"
    __table_args__ = (UniqueConstraint("model", "version", name="uq_model_version"),)

    id: int | None = Field(default=None, primary_key=True)
    model: str = Field(index=True)
    version: int
    run_id: str
    job_id: str
    artifact_uri: str
    artifact_sha256: str
    package_path: str
    contract_fingerprint: str
    metrics: dict[str, float] = _json_column()
    params: dict[str, str] = _json_column()
    data_lineage: dict[str, Any] = _json_column()
    code: dict[str, Any] = _json_column()
    environment: dict[str, Any] = _json_column()
    manifest: dict[str, Any] = _json_column()
    parent_version: int | None = None
    # The ModelTrained that caused it: unique, so a redelivery can never add a version.
    trained_event_id: str = Field(unique=True)
    correlation_id: str
    registered_event_id: str = Field(unique=True)
    registered_at: datetime = _utc_column()
    producer: str
    mlflow_version: int | None = None


class RegistrationFailure(SQLModel, table=True):
    """A ModelTrained the registry refused, and the RegistrationFailed it answered with."""

    __tablename__ = "registration_failure"

    id: int | None = Field(default=None, primary_key=True)
    model: str = Field(index=True)
    run_id: str
    artifact_uri: str
    reason: str
    trained_event_id: str = Field(unique=True)
    correlation_id: str
    failed_event_id: str = Field(unique=True)
    failed_at: datetime = _utc_column()
    producer: str


class AliasChange(SQLModel, table=True):
    """An alias moved (version set) or was cleared (version null), and which event did it."""

    __tablename__ = "alias_change"
    __table_args__ = (UniqueConstraint("event_id", "alias", name="uq_alias_change_event"),)

    id: int | None = Field(default=None, primary_key=True)
    model: str = Field(index=True)
    alias: str
    version: int | None = None
    changed_at: datetime = _utc_column(index=True)
    event_id: str
    event_type: str
    reason: str = ""


class ProcessedEvent(SQLModel, table=True):
    """Alias events already applied, so a redelivered suffix of the log changes nothing."""

    __tablename__ = "processed_event"

    event_id: str = Field(primary_key=True)
    event_type: str
    model: str


def normalized_url(db_url: str) -> str:
    """The URL with psycopg 3 as PostgreSQL's driver (the one in uv.lock)."""
    url = make_url(db_url)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    return url.render_as_string(hide_password=False)


def make_engine(db_url: str) -> Engine:
    """An engine for ``db_url`` with the tables created."""
    url = make_url(normalized_url(db_url))
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        # The consumer writes from a worker thread while the API reads from others.
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        engine = create_engine(url, pool_pre_ping=True)
    SQLModel.metadata.create_all(engine)
    return engine


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()

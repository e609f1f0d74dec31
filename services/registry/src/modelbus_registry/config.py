"""Settings of the registry service."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from modelbus.config import KafkaSettings

MIN_TOKEN_CHARS = 16


class Settings(BaseSettings):
    """registry settings (env prefix ``MODELBUS_REGISTRY_``; the broker's: ``MODELBUS_``)."""

    model_config = SettingsConfigDict(
        env_prefix="MODELBUS_REGISTRY_",
        extra="ignore",
        populate_by_name=True,
        hide_input_in_errors=True,  # the input holds the token
    )

    kafka: KafkaSettings = Field(default_factory=KafkaSettings, description="Broker and topics.")
    db_url: str = Field(
        default="sqlite:///.run/registry.db",
        validation_alias=AliasChoices("MODELBUS_REGISTRY_DB_URL", "MODELBUS_DB_URL", "db_url"),
        description="SQLAlchemy URL of the registry database: SQLite by default, "
        "postgresql://user:pass@host/db for PostgreSQL. Also read from MODELBUS_DB_URL.",
    )
    mlflow_tracking_uri: str = Field(
        default="sqlite:///.run/mlflow.db",
        validation_alias=AliasChoices(
            "MODELBUS_REGISTRY_MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_URI", "mlflow_tracking_uri"
        ),
        description="MLflow tracking (and model registry) URI; MLFLOW_TRACKING_URI overrides.",
    )
    mlflow_mirror: bool = Field(
        default=True,
        description="Mirror versions and the champion/canary aliases into the MLflow Model "
        "Registry, so data scientists see them in the MLflow UI.",
    )
    packages_dir: Path = Field(
        default=Path(".run/registry/packages"),
        description="Where verified copies of model packages are kept, by model and sha256; "
        "artifact downloads are served from here.",
    )
    artifact_roots: list[str] = Field(
        default_factory=lambda: [".run/mlartifacts"],
        description="Where packages may come from: local folders (the trainer's MLflow "
        "artifact store by default) or URI prefixes such as mlflow-artifacts:/ or "
        "s3://bucket/models/. Any other artifact URI is refused with RegistrationFailed, "
        "and so is a package holding a symlink that leaves its root. JSON list in the "
        "environment, e.g. '[\".run/mlartifacts\"]'.",
    )
    group_id: str = Field(
        default="modelbus-registry", description="Kafka consumer group of the registry."
    )
    host: str = Field(default="127.0.0.1", description="Interface the REST API listens on.")
    port: int = Field(default=8081, ge=0, le=65535, description="Port of the REST API.")
    max_body_bytes: int = Field(
        default=64 * 1024,
        ge=1024,
        le=16 * 1024 * 1024,
        description="Largest request body the API accepts; larger ones get 413 unread.",
    )
    auth_enabled: bool = Field(
        default=True, description="Require a bearer token on the write endpoints."
    )
    api_token: SecretStr | None = Field(
        default=None,
        description=f"Bearer token of the write endpoints, at least {MIN_TOKEN_CHARS} "
        "characters; required while auth is on.",
    )

    @model_validator(mode="after")
    def _refuse_artifacts_from_anywhere(self) -> Settings:
        for root in self.artifact_roots:
            if root.strip() in {"", "/", "file:///", "file:/"}:
                raise ValueError(
                    f"artifact root {root!r} would admit any file on the machine; name the "
                    "trainer's artifact folder (MODELBUS_REGISTRY_ARTIFACT_ROOTS)"
                )
        return self

    @model_validator(mode="after")
    def _refuse_open_writes(self) -> Settings:
        if not self.auth_enabled:
            return self
        token = self.api_token.get_secret_value() if self.api_token else ""
        if not token:
            raise ValueError(
                "auth is on but no API token is set: set MODELBUS_REGISTRY_API_TOKEN, or "
                "MODELBUS_REGISTRY_AUTH_ENABLED=false for a local sandbox only"
            )
        if len(token) < MIN_TOKEN_CHARS:
            raise ValueError(
                f"MODELBUS_REGISTRY_API_TOKEN has {len(token)} characters; use at least "
                f"{MIN_TOKEN_CHARS} (e.g. python -c 'import secrets; print(secrets.token_hex())')"
            )
        return self

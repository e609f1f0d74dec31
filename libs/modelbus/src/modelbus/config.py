"""Settings shared by every service; each service subclasses them with its own env prefix."""

from __future__ import annotations

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class KafkaSettings(BaseSettings):
    """How to reach the broker and shape the topics. Env prefix ``MODELBUS_``."""

    # populate_by_name: KafkaSettings(bootstrap_servers=...) must win over the aliases' default.
    model_config = SettingsConfigDict(env_prefix="MODELBUS_", extra="ignore", populate_by_name=True)

    bootstrap_servers: str = Field(
        default="127.0.0.1:19092",
        validation_alias=AliasChoices("MODELBUS_BOOTSTRAP_SERVERS", "KAFKA_BOOTSTRAP_SERVERS"),
        description="Kafka bootstrap servers, host:port[,host:port]. Also read from "
        "KAFKA_BOOTSTRAP_SERVERS.",
    )
    data_partitions: int = Field(
        default=4,
        ge=1,
        description="Partitions of each model's requests/predictions/feedback/dlq topics; "
        "the most inference workers that can share a model.",
    )
    data_retention_ms: int = Field(
        default=7 * 24 * 3600 * 1000,
        description="Retention of data-plane and health topics (days, not forever).",
    )
    max_message_bytes: int = Field(
        default=1_048_576,
        ge=1024,
        description="Largest message a producer may send; larger requests are dead-lettered.",
    )
    replication_factor: int | None = Field(
        default=None,
        ge=1,
        description="Copies of each partition of the topics modelbus creates; default 3 on a "
        "cluster of three or more brokers, else 1. The lifecycle and schemas topics never get "
        "fewer than that default.",
    )
    min_insync_replicas: int | None = Field(
        default=None,
        ge=1,
        description="Copies that must have a write before it is acknowledged (producers use "
        "acks=all); default 2 with three or more copies, else 1.",
    )
    models: list[str] = Field(
        default_factory=lambda: ["credit"],
        description="Models whose data topics and contracts this deployment serves.",
    )

    @field_validator("bootstrap_servers")
    @classmethod
    def _has_port(cls, value: str) -> str:
        for server in value.split(","):
            if ":" not in server:
                raise ValueError(
                    f"bootstrap server {server!r} has no port; write host:port, "
                    "e.g. 127.0.0.1:19092"
                )
        return value

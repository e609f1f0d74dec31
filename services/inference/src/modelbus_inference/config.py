"""Settings of the inference service."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from modelbus.config import KafkaSettings


class Settings(BaseSettings):
    """inference settings (env prefix ``MODELBUS_INFERENCE_``; the broker's: ``MODELBUS_``)."""

    model_config = SettingsConfigDict(env_prefix="MODELBUS_INFERENCE_", extra="ignore")

    kafka: KafkaSettings = Field(default_factory=KafkaSettings, description="Broker and topics.")
    model: str = Field(default="credit", description="Model this worker serves.")
    contract: str | None = Field(
        default=None,
        description="Data contract (schemas/models/<contract>.avsc) of the model's requests; "
        "defaults to the model name.",
    )
    group_id: str | None = Field(
        default=None,
        description="Consumer group shared by the model's workers; default "
        "'modelbus-inference-<model>'.",
    )
    worker_index: int = Field(
        default=0,
        ge=0,
        description="This worker's index in its group; names its transactional id and static "
        "group membership, so a restarted worker fences its predecessor at once.",
    )
    delivery: Literal["exactly_once", "at_least_once"] = Field(
        default="exactly_once",
        description="exactly_once: a batch's results and its input offsets commit in one Kafka "
        "transaction, so a read_committed reader sees each request answered once, even across "
        "crashes. at_least_once: an idempotent producer with no transactions; input offsets "
        "are committed only once every result of the batch is delivered, so a crash never "
        "loses a request but may answer the uncommitted tail again (readers de-duplicate by "
        "request_id).",
    )
    max_batch_size: int = Field(default=500, ge=1, description="Most requests in a micro-batch.")
    max_wait_ms: int = Field(
        default=5,
        ge=0,
        description="Longest one poll waits for the first request of a micro-batch; an idle "
        "worker polls at this pace.",
    )
    batch_linger_ms: int = Field(
        default=0,
        ge=0,
        description="Once a batch's first request is in, how long to wait for more before it "
        "runs; 0 runs it with what has arrived. Under load batches grow anyway, from what "
        "arrives while the batch before is written.",
    )
    max_request_bytes: int = Field(
        default=65_536, ge=64, description="Larger request messages are dead-lettered."
    )
    environment_policy: Literal["strict", "compatible"] = Field(
        default="compatible",
        description="strict: the model's uv.lock hash must equal ours; compatible: same Python "
        "minor and torch/numpy major.minor. Anything else is refused.",
    )
    torch_threads: int = Field(
        default=1,
        ge=1,
        description="Torch intra-op threads per worker; scale out with workers, not threads.",
    )
    serve_latest_without_routes: bool = Field(
        default=False,
        description="For deployments without a deployer: serve the newest registered version "
        "as champion while a model has no TrafficShifted. Off by default, because with a "
        "deployer running only its TrafficShifted decides what is served.",
    )
    transaction_timeout_ms: int = Field(
        default=15_000,
        ge=1000,
        description="How long the broker keeps a dead worker's open transaction before "
        "aborting it (a restarted worker aborts it at once).",
    )
    session_timeout_ms: int = Field(
        default=10_000, ge=6000, description="Consumer group session timeout."
    )
    kafka_deadline_s: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="Deadline of every blocking Kafka call and of one batch's transaction; "
        "past it the worker rebuilds its producer and consumer instead of waiting on.",
    )
    rebuild_backoff_max_s: float = Field(
        default=2.0, gt=0, le=60, description="Longest pause between reconnection attempts."
    )
    stall_after_s: float = Field(
        default=30.0,
        gt=0,
        description="/healthz answers 503 when no transaction committed for this long while "
        "the stream was not idle (input waiting, or clients being rebuilt).",
    )
    shutdown_timeout_s: float = Field(
        default=5.0,
        gt=0,
        le=60,
        description="SIGTERM ends the worker within this long, even mid-outage; an open "
        "transaction it could not finish is aborted by the broker or the next worker.",
    )
    http_host: str = Field(default="127.0.0.1", description="Interface for HTTP and /metrics.")
    http_port: int = Field(
        default=8480,
        ge=0,
        description="Port of worker 0's HTTP API and /metrics; worker i listens on port + i; "
        "0 turns HTTP off.",
    )
    lifecycle_replay_timeout_s: float = Field(
        default=30.0, gt=0, description="Longest the start-up replay of modelbus.lifecycle takes."
    )

    @model_validator(mode="after")
    def _defaults_from_model(self) -> Settings:
        if self.max_request_bytes > self.kafka.max_message_bytes:
            raise ValueError(
                f"max_request_bytes {self.max_request_bytes} exceeds the broker message limit "
                f"{self.kafka.max_message_bytes}"
            )
        return self

    @property
    def linger_s(self) -> float:
        """``batch_linger_ms`` in seconds."""
        return self.batch_linger_ms / 1000

    @property
    def contract_name(self) -> str:
        """The data contract's name."""
        return self.contract or self.model

    @property
    def consumer_group(self) -> str:
        """The consumer group every worker of this model joins."""
        return self.group_id or f"modelbus-inference-{self.model}"

    @property
    def worker_name(self) -> str:
        """Stable per-slot id: transactional id and static group member id."""
        return f"{self.consumer_group}-{self.worker_index}"

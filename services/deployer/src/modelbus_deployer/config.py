"""Settings of the deployer service; the rollout policy's defaults live here."""

from __future__ import annotations

import itertools

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from modelbus.config import KafkaSettings
from modelbus.events import types as t


class Settings(BaseSettings):
    """deployer settings (env prefix ``MODELBUS_DEPLOYER_``; the broker's: ``MODELBUS_``)."""

    model_config = SettingsConfigDict(env_prefix="MODELBUS_DEPLOYER_", extra="ignore")

    kafka: KafkaSettings = Field(default_factory=KafkaSettings, description="Broker and topics.")
    group_id: str = Field(
        default="modelbus-deployer",
        description="Consumer group over the lifecycle partition: the member holding it is the "
        "one deployer that acts; others stay passive and take over when it dies.",
    )
    session_timeout_ms: int = Field(
        default=6_000,
        ge=6_000,
        description="How long a dead active deployer keeps the lifecycle partition before a "
        "passive one takes over.",
    )
    models_pattern: str = Field(
        default=r"[^.]+",
        description="Regular expression (full match) of the model names this deployer manages.",
    )
    tick_s: float = Field(
        default=0.5, gt=0, le=10, description="How often timers (bake time, health gaps) run."
    )
    steps_pct: list[float] = Field(
        default=[5.0, 25.0, 50.0, 100.0],
        description="Canary shares, in order; reaching 100 promotes the candidate.",
    )
    shadow: bool = Field(
        default=False,
        description="Start each rollout with a shadow step: the candidate scores a mirrored "
        "copy of all traffic (results on modelbus.<model>.shadow, never to callers) and is "
        "judged against the champion on it before any caller is routed to it.",
    )
    min_requests: int = Field(
        default=200, ge=1, description="Results each arm needs in a step before it may pass."
    )
    min_bake_s: float = Field(
        default=10.0, ge=0, description="Shortest time a step lasts before it may pass."
    )
    health_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="With no ModelHealth for this long a rollout pauses and says so.",
    )
    confidence: float = Field(
        default=0.95,
        gt=0.5,
        lt=1,
        description="Confidence of the bounds, held over every look of a rollout (the error "
        "rate is spent as alpha/k^2 * 6/pi^2 at the k-th look).",
    )
    max_error_rate_increase: float = Field(
        default=0.01, ge=0, le=1, description="Largest allowed dead-letter rate increase."
    )
    max_accuracy_drop: float = Field(
        default=0.02, ge=0, le=1, description="Largest allowed accuracy drop (absolute)."
    )
    max_log_loss_increase: float = Field(
        default=0.1, ge=0, description="Largest allowed mean log loss increase."
    )
    max_latency_p99_ratio: float = Field(
        default=1.5,
        ge=1,
        description="Candidate p99 latency at most this times the champion's, in the same "
        "windows; fails only once the windows show it with `confidence`.",
    )
    latency_p99_ceiling_ms: float = Field(
        default=500.0, gt=0, description="Absolute p99 latency ceiling of the candidate."
    )
    max_score_shift: float = Field(
        default=0.2,
        gt=0,
        le=1,
        description="Largest mean positive-score difference; fails a step only when labels "
        "are not required (with labels, accuracy is the judge and a retrained model is "
        "expected to score differently).",
    )
    min_labelled: int = Field(
        default=100, ge=1, description="Labelled results each arm needs for label guardrails."
    )
    require_labels: bool = Field(
        default=True, description="A step passes only once the label guardrails are conclusive."
    )
    max_consecutive_failures: int = Field(
        default=1,
        ge=1,
        description="Failed judgements in a row that roll back. Each judgement already rests "
        "on every window of the step and a bound valid under repeated looks, so one "
        "conclusive failure is evidence enough by default.",
    )
    max_total_failures: int = Field(
        default=3, ge=1, description="Failed judgements in one rollout that roll back."
    )

    @field_validator("steps_pct")
    @classmethod
    def _steps_rise_to_100(cls, value: list[float]) -> list[float]:
        if not value or value[-1] != 100.0 or any(b <= a for a, b in itertools.pairwise(value)):
            raise ValueError(f"steps_pct must rise strictly and end at 100, got {value}")
        if value[0] <= 0:
            raise ValueError(f"the first step must give the canary some traffic, got {value}")
        return value

    @model_validator(mode="after")
    def _limits(self) -> Settings:
        if self.max_consecutive_failures > self.max_total_failures:
            raise ValueError("max_consecutive_failures exceeds max_total_failures")
        return self

    def policy(self) -> t.RolloutPolicy:
        """The policy a new rollout records in RolloutStarted."""
        return t.RolloutPolicy(
            steps_pct=list(self.steps_pct),
            shadow=self.shadow,
            min_requests=self.min_requests,
            min_bake_s=self.min_bake_s,
            health_timeout_s=self.health_timeout_s,
            confidence=self.confidence,
            max_error_rate_increase=self.max_error_rate_increase,
            max_accuracy_drop=self.max_accuracy_drop,
            max_log_loss_increase=self.max_log_loss_increase,
            max_latency_p99_ratio=self.max_latency_p99_ratio,
            latency_p99_ceiling_ms=self.latency_p99_ceiling_ms,
            max_score_shift=self.max_score_shift,
            min_labelled=self.min_labelled,
            require_labels=self.require_labels,
            max_consecutive_failures=self.max_consecutive_failures,
            max_total_failures=self.max_total_failures,
        )

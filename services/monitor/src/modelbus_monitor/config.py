"""Settings of the monitor service.

The detector defaults were chosen from measurements (River 0.26 on 2 shared cores, see
``benchmarks/drift.py`` and ``benchmarks/results/drift.json``): ADWIN costs about 1 us per
update with ``clock`` 1 to 32 while KSWIN costs about 400 us, so every numeric feature, the
score and the error stream get an ADWIN on every event (no sampling needed) and the
two-sample tests against ``profile.json`` run only when a detector fires.
"""

from __future__ import annotations

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from modelbus.config import KafkaSettings


class Settings(BaseSettings):
    """monitor settings (env prefix ``MODELBUS_MONITOR_``; the broker's: ``MODELBUS_``)."""

    model_config = SettingsConfigDict(env_prefix="MODELBUS_MONITOR_", extra="ignore")

    kafka: KafkaSettings = Field(default_factory=KafkaSettings, description="Broker and topics.")
    contracts: list[str] = Field(
        default_factory=lambda: ["credit"],
        description="Data contracts (schemas/models/<name>.avsc) whose typed requests the "
        "monitor decodes; writer schemas come from modelbus.schemas.",
    )
    models_pattern: str = Field(
        default=r"[^.]+",
        description="Regular expression (full match) of the model names to watch.",
    )
    group_id: str = Field(
        default="modelbus-monitor",
        description="Consumer group whose committed offsets mark what was fully handled "
        "(dead letters are written only past them).",
    )
    session_timeout_ms: int = Field(
        default=6_000,
        ge=6_000,
        description="How long a dead active monitor keeps the lease (group <group_id>-lease) "
        "before a standby monitor of the same group takes over.",
    )
    window_s: float = Field(
        default=5.0, gt=0, le=3600, description="Length of a ModelHealth window (event time)."
    )
    lateness_s: float = Field(
        default=2.0,
        ge=0,
        description="How long after its end a window waits for late results before it is "
        "published (then closed for good).",
    )
    join_window_s: float = Field(
        default=600.0,
        gt=0,
        description="How long a request, result or label waits for its partners; older "
        "entries expire and are counted.",
    )
    replay_s: float = Field(
        default=3600.0,
        gt=0,
        description="On start the detectors and windows are rebuilt by replaying this much of "
        "the data topics' tail (nothing is pickled).",
    )
    adwin_delta: float = Field(
        default=0.002, gt=0, lt=1, description="ADWIN confidence on features and scores."
    )
    adwin_clock: int = Field(
        default=4,
        ge=1,
        description="ADWIN checks for a cut every this many updates (River's default 32 adds "
        "up to 32 events of delay for ~0.3 us per update saved).",
    )
    error_adwin_delta: float = Field(
        default=0.002, gt=0, lt=1, description="ADWIN confidence on the 0/1 error stream."
    )
    min_samples: int = Field(
        default=300, ge=30, description="Observations a stream needs before any alert."
    )
    alpha: float = Field(
        default=0.001,
        gt=0,
        lt=0.5,
        description="Family-wise error rate of the evidence tests (Bonferroni over features).",
    )
    min_effect_sigma: float = Field(
        default=0.2,
        gt=0,
        description="Smallest mean shift of a numeric feature, in training standard "
        "deviations, worth an alert.",
    )
    min_score_shift: float = Field(
        default=0.05, gt=0, lt=1, description="Smallest mean positive-score shift alerted."
    )
    min_error_increase: float = Field(
        default=0.05, gt=0, lt=1, description="Smallest error-rate increase alerted."
    )
    min_category_psi: float = Field(
        default=0.05, gt=0, description="Smallest PSI of a categorical feature alerted."
    )
    category_chunk: int = Field(
        default=1000,
        ge=100,
        description="Observations per frequency test of a categorical feature.",
    )
    history: int = Field(
        default=4000,
        ge=500,
        description="Recent observations kept per stream to estimate the onset and test it.",
    )
    cooldown_s: float = Field(
        default=600.0,
        ge=0,
        description="After an alert, the same model/version/variant/kind stays quiet this "
        "long (event time) even when re-armed.",
    )
    rearm_after: int = Field(
        default=2000,
        ge=1,
        description="Observations without any detector firing before a stream can alert again.",
    )
    idle_close_s: float = Field(
        default=1.0, gt=0, description="How often live windows are closed by the wall clock."
    )
    topic_refresh_s: float = Field(
        default=2.0, gt=0, description="How often new models' topics are looked for."
    )

    @model_validator(mode="after")
    def _safe(self) -> Settings:
        if self.lateness_s >= self.join_window_s:
            raise ValueError("lateness_s must be shorter than join_window_s")
        if self.min_samples > self.history:
            raise ValueError("min_samples must not exceed history")
        return self

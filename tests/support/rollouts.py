"""Deployer rollouts without a broker: a run of triggers fed to the fold, as the log holds them."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

from modelbus.events import types as t
from modelbus_deployer.config import Settings
from modelbus_deployer.domain import Deployer

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
POLICY = Settings(min_requests=50, min_labelled=50, min_bake_s=0, health_timeout_s=30).policy()
SHADOW_POLICY = dataclasses.replace(POLICY, shadow=True)


def meta(event_id: str, at: datetime = T0, producer: str = "registry@h:1") -> t.EventMeta:
    """Meta of an event at ``at``, its correlation id ``loop-<event_id>``."""
    return t.EventMeta(event_id=event_id, occurred_at=at, producer=producer,
                       correlation_id=f"loop-{event_id}")  # fmt: skip


def registered(version: int, at: datetime = T0) -> t.ModelRegistered:
    """Version ``version`` of ``credit`` registered at ``at``."""
    return t.ModelRegistered(meta=meta(f"reg-{version}", at), model="credit", version=version,
                             run_id="r", artifact_uri="file:///p", artifact_sha256="0" * 64,
                             metrics={})  # fmt: skip


def health(version: int, variant: str, start: datetime, *, accuracy: float = 0.95,
           requests: int = 1000, errors: int = 0, p99: float = 10.0) -> t.ModelHealth:  # fmt: skip
    """A five-second health window of one variant, all its requests labelled."""
    correct = round(requests * accuracy)
    return t.ModelHealth(
        meta=meta(f"h-{version}-{variant}-{start.timestamp()}", producer="monitor@h:2"),
        model="credit", version=version, variant=variant, window_start=start,
        window_end=start + timedelta(seconds=5), requests=requests, errors=errors,
        latency_p50_ms=p99 / 2, latency_p99_ms=p99, mean_score=0.5, accuracy=accuracy,
        labelled=requests, correct=correct, log_loss=0.2 if accuracy > 0.9 else 0.6,
    )  # fmt: skip


class Run:
    """A deployer fed triggers; every decision kept as the log would hold it."""

    def __init__(self, policy: t.RolloutPolicy = POLICY) -> None:
        self.deployer = Deployer(producer="deployer@test", policy=policy)
        self.log: list[Any] = []
        self.boundaries: list[int] = []
        self.clock = T0

    def feed(self, event: Any) -> list[Any]:
        """Decide on ``event`` at the latest time seen; returns the decisions."""
        self.clock = max(self.clock, getattr(event, "window_end", self.clock))
        if not isinstance(event, t.ModelHealth):
            self.log.append(event)
        decided = self.deployer.decide(event, now=self.clock)
        self.log += decided
        self.boundaries.append(len(self.log))
        return decided

    def windows(self, candidate: int, champion: int, *, n: int, start: datetime,
                candidate_accuracy: float = 0.95, variant: str = "canary",
                ) -> list[Any]:  # fmt: skip
        """``n`` windows of champion and candidate (``variant``) health, five seconds apart."""
        decided: list[Any] = []
        for k in range(n):
            at = start + timedelta(seconds=5 * k)
            decided += self.feed(health(champion, "champion", at))
            decided += self.feed(health(candidate, variant, at, accuracy=candidate_accuracy))
        return decided


def with_champion(policy: t.RolloutPolicy = POLICY) -> Run:
    """A run whose first version is already the champion."""
    run = Run(policy)
    run.feed(registered(1))
    return run

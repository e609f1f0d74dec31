"""Lifecycle events as the services would publish them, for tests to feed in."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from modelbus.events import new_meta
from modelbus.events import types as t
from modelbus.events.schemas import fingerprint_of
from modelbus.packaging import capture_environment
from tests.support.packages import credit_contract

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def meta_at(when: datetime, producer: str = "deployer@test") -> t.EventMeta:
    """Meta of an event that happened at ``when``."""
    return t.EventMeta(
        event_id=str(uuid.uuid4()),
        occurred_at=when,
        producer=producer,
        correlation_id=str(uuid.uuid4()),
        causation_id=None,
    )


def training_requested(
    event_id: str = "req-1", *, at: datetime = T0, seed: int | None = 7
) -> t.TrainingRequested:
    """A TrainingRequested for ``credit`` with id ``event_id``, correlated as ``corr-<id>``."""
    return t.TrainingRequested(
        meta=t.EventMeta(
            event_id=event_id,
            occurred_at=at,
            producer="test",
            correlation_id=f"corr-{event_id}",
            causation_id=None,
        ),
        model="credit",
        reason="test",
        requested_by="tester",
        seed=seed,
        max_rows=None,
    )


def model_trained(
    model: str,
    artifact_uri: str,
    artifact_sha256: str,
    *,
    run_id: str | None = None,
    parent_version: int | None = None,
    cause: Any = None,
) -> t.ModelTrained:
    """The ModelTrained a trainer would publish for that package."""
    return t.ModelTrained(
        meta=new_meta("trainer@test", cause=cause),
        model=model,
        job_id=f"job-{uuid.uuid4().hex[:8]}",
        run_id=run_id or uuid.uuid4().hex,
        artifact_uri=artifact_uri,
        artifact_sha256=artifact_sha256,
        contract_fingerprint=fingerprint_of(credit_contract()).hex(),
        metrics={"accuracy": 0.75, "roc_auc": 0.8125},
        params={"hidden": "4", "seed": "7"},
        data=t.DataLineage(
            snapshot_sha256="ab" * 32,
            rows=60,
            sources=[t.DataSource(kind="file", uri="reference/credit.jsonl", rows=60)],
        ),
        code=t.CodeVersion(git_sha="c0ffee" * 6 + "c0ff", dirty=False),
        environment=capture_environment(),
        parent_version=parent_version,
    )


def registered(model: str, version: int, directory: Path, sha256: str) -> t.ModelRegistered:
    """A ModelRegistered for a package directory."""
    return t.ModelRegistered(
        meta=new_meta("test-registry"),
        model=model,
        version=version,
        run_id=f"run-{version}",
        artifact_uri=directory.as_uri(),
        artifact_sha256=sha256,
        metrics={},
    )


def shifted(model: str, routes: list[tuple[str, int, float]]) -> t.TrafficShifted:
    """A TrafficShifted with (variant, version, weight_pct) routes."""
    return t.TrafficShifted(
        meta=new_meta("test-deployer"),
        model=model,
        routes=[t.Route(variant=v, version=n, weight_pct=w) for v, n, w in routes],
        reason="test",
    )

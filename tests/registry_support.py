"""Helpers the registry tests share: a real credit package and the ModelTrained announcing it."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from modelbus.data import generate_credit
from modelbus.events import contract_path, new_meta
from modelbus.events import types as t
from modelbus.events.schemas import fingerprint_of
from modelbus.packaging import (
    Preprocessor,
    build_profile,
    capture_environment,
    package_sha256,
    write_package,
)

TOKEN = "registry-test-token-0123456789"


def credit_contract() -> dict[str, Any]:
    """The credit data contract."""
    return json.loads(contract_path("credit").read_text())


def make_package(directory: Path, model: str, *, seed: int = 7) -> str:
    """Write a small credit package named ``model``; returns its sha256 (of manifest.json)."""
    contract = credit_contract()
    rows, labels = generate_credit(60, seed=seed)
    preprocessor = Preprocessor.fit(rows, contract)
    architecture = {
        "kind": "mlp",
        "input_dim": preprocessor.n_outputs,
        "hidden": [4],
        "activation": "relu",
        "n_classes": 2,
    }
    rng = np.random.default_rng(seed)
    weights = {
        "0.weight": rng.normal(size=(4, preprocessor.n_outputs)).astype(np.float32),
        "0.bias": np.zeros(4, dtype=np.float32),
        "2.weight": rng.normal(size=(2, 4)).astype(np.float32),
        "2.bias": np.zeros(2, dtype=np.float32),
    }
    write_package(
        directory,
        name=model,
        contract=contract,
        preprocessor=preprocessor,
        runtime="torch-mlp",
        weights=weights,
        architecture=architecture,
        profile=build_profile(rows, contract, labels=labels),
        metrics={"accuracy": 0.75},
        params={"hidden": "4", "seed": str(seed)},
    )
    return package_sha256(directory)


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


def meta_at(when: datetime, producer: str = "deployer@test") -> t.EventMeta:
    """Meta of an event that happened at ``when``."""
    return t.EventMeta(
        event_id=str(uuid.uuid4()),
        occurred_at=when,
        producer=producer,
        correlation_id=str(uuid.uuid4()),
        causation_id=None,
    )

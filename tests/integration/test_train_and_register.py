"""TrainingRequested -> trainer -> ModelTrained -> registry -> ModelRegistered, as processes.

Both services run as they do in production (``python -m ... run``) on the real broker,
sharing one MLflow tracking store (SQLite) in tmp_path.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelbus.config import KafkaSettings
from modelbus.events import new_meta
from modelbus.events import types as t
from tests.support.broker import Bus, start_at_log_end
from tests.support.ports import free_port
from tests.support.processes import http_ready, registry_env, service

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
MODEL = "credit"  # the model with a data contract; each run's events are told apart by ids


@dataclass
class Loop:
    """The running trainer and registry, and what the test needs around them."""

    bus: Bus
    api: httpx.Client
    tracking_uri: str
    root: Path
    base: int
    """The highest version of the model the shared log held before this test."""

    def request_training(self, seed: int) -> t.TrainingRequested:
        """Publish a TrainingRequested for the model."""
        request = t.TrainingRequested(
            meta=new_meta("test"),
            model=MODEL,
            reason="integration test",
            requested_by="test",
            seed=seed,
            max_rows=None,
        )
        self.bus.publish(request)
        return request

    def chain(self, request: t.TrainingRequested) -> tuple[Any, Any, Any]:
        """TrainingStarted, ModelTrained and ModelRegistered answering ``request``."""
        same_loop = {"where": lambda e: e.meta.correlation_id == request.meta.correlation_id}
        [started] = self.bus.wait_for(MODEL, t.TrainingStarted, **same_loop)
        [trained] = self.bus.wait_for(MODEL, t.ModelTrained, timeout_s=180, **same_loop)
        [registered] = self.bus.wait_for(MODEL, t.ModelRegistered, **same_loop)
        return started, trained, registered


@pytest.fixture(scope="module")
def loop(kafka_settings: KafkaSettings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loop]:
    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("train-and-register")
    tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
    MlflowClient(tracking_uri=tracking_uri).search_experiments()  # create its tables once, here
    port = free_port()
    trainer_group, registry_group = f"test-trainer-{port}", f"test-registry-{port}"
    # The lifecycle log is shared with earlier runs: both services start at its end (the
    # trainer still replays it for its state). The log is the registry's truth, so version
    # numbers go on from the highest one it already holds.
    for group in (trainer_group, registry_group):
        start_at_log_end(kafka_settings.bootstrap_servers, group)
    bus = Bus(kafka_settings, "test-train-and-register")
    logged = [e.version for e in bus.lifecycle(MODEL) if isinstance(e, t.ModelRegistered)]
    trainer_env = {
        "MODELBUS_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MODELBUS_TRAINER_GROUP_ID": trainer_group,
        "MODELBUS_TRAINER_RUN_DIR": str(root / "trainer"),
        "MODELBUS_TRAINER_MLFLOW_ARTIFACT_ROOT": str(root / "mlartifacts"),
        "MODELBUS_TRAINER_REFERENCE_ROWS": "1500",
        # Reference data only: labelled credit traffic left on a shared broker must not change
        # the snapshot this test checks row for row.
        "MODELBUS_TRAINER_PRODUCTION_ROWS": "0",
        "MODELBUS_TRAINER_EPOCHS": "2",
        "MODELBUS_TRAINER_HIDDEN": "[16]",
        "MODELBUS_TRAINER_REPO_DIR": str(REPO),
        "MODELBUS_TRAINER_KAFKA_READ_TIMEOUT_S": "10",
    }
    env = registry_env(
        kafka_settings.bootstrap_servers,
        root / "registry",
        port=port,
        tracking_uri=tracking_uri,
        group_id=registry_group,
    )
    (root / "registry").mkdir()
    url = f"http://127.0.0.1:{port}"
    with (
        service("modelbus_registry", env, root / "registry", ready=http_ready(f"{url}/healthz")),
        service("modelbus_trainer", trainer_env, root),
    ):
        yield Loop(bus, httpx.Client(base_url=url), tracking_uri, root, max(logged, default=0))


@pytest.fixture(scope="module")
def two_versions(loop: Loop) -> list[tuple[t.TrainingRequested, Any, Any, Any]]:
    """Two training requests, one after the other, and what each one caused."""
    chains = []
    for seed in (11, 12):
        request = loop.request_training(seed)
        chains.append((request, *loop.chain(request)))
    return chains


def test_a_training_request_yields_started_trained_and_registered_v1_with_lineage(
    loop: Loop, two_versions: list[tuple[t.TrainingRequested, Any, Any, Any]]
) -> None:
    from mlflow import MlflowClient

    request, started, trained, registered = two_versions[0]

    assert started.meta.causation_id == request.meta.event_id
    assert trained.meta.causation_id == request.meta.event_id
    assert registered.meta.causation_id == trained.meta.event_id
    assert {e.meta.correlation_id for e in (started, trained, registered)} == {
        request.meta.correlation_id
    }
    registered_as = (registered.model, registered.version, registered.parent_version)
    assert registered_as == (MODEL, loop.base + 1, None)
    assert trained.job_id == started.job_id
    assert (registered.run_id, registered.artifact_uri, registered.artifact_sha256) == (
        trained.run_id,
        trained.artifact_uri,
        trained.artifact_sha256,
    )
    assert registered.metrics == trained.metrics
    assert set(trained.metrics) >= {"accuracy", "roc_auc", "log_loss"}
    assert trained.params["seed"] == "11"

    lineage = loop.api.get(f"/v1/models/{MODEL}/versions/{loop.base + 1}/lineage").json()
    assert lineage["causation_event_id"] == trained.meta.event_id
    assert lineage["correlation_id"] == request.meta.correlation_id
    assert lineage["run_id"] == trained.run_id
    assert lineage["data"] == trained.data.to_avro()
    assert lineage["data"]["rows"] == 1500
    assert lineage["code"] == trained.code.to_avro()
    assert _is_a_commit(trained.code.git_sha)
    lock = hashlib.sha256((REPO / "uv.lock").read_bytes()).hexdigest()
    assert lineage["environment"]["lock_sha256"] == lock
    assert lineage["params"] == trained.params
    manifest = loop.api.get(f"/v1/models/{MODEL}/versions/{loop.base + 1}/manifest").json()
    assert manifest["name"] == MODEL

    client = MlflowClient(tracking_uri=loop.tracking_uri)
    mirrored = {int(v.version): v for v in client.search_model_versions(f"name='{MODEL}'")}
    assert mirrored[1].run_id == trained.run_id
    assert mirrored[1].tags["modelbus.artifact_sha256"] == trained.artifact_sha256


def test_a_second_request_yields_v2_whose_parent_is_v1(
    loop: Loop, two_versions: list[tuple[t.TrainingRequested, Any, Any, Any]]
) -> None:
    request, _started, trained, registered = two_versions[1]

    first = loop.base + 1
    assert (registered.version, registered.parent_version) == (first + 1, first)
    assert registered.meta.causation_id == trained.meta.event_id
    assert registered.meta.correlation_id == request.meta.correlation_id
    assert trained.params["seed"] == "12"
    assert registered.artifact_sha256 != two_versions[0][3].artifact_sha256
    versions = loop.api.get(f"/v1/models/{MODEL}/versions").json()
    assert [(v["version"], v["parent_version"]) for v in versions] == [
        (first, None),
        (first + 1, first),
    ]


def test_a_redelivered_model_trained_yields_no_v3(
    loop: Loop, two_versions: list[tuple[t.TrainingRequested, Any, Any, Any]]
) -> None:
    request, _started, trained, registered = two_versions[1]

    loop.bus.publish(trained)

    same_loop = {"where": lambda e: e.meta.correlation_id == request.meta.correlation_id}
    first, again = loop.bus.wait_for(MODEL, t.ModelRegistered, count=2, **same_loop)
    assert first == again == registered
    versions = loop.api.get(f"/v1/models/{MODEL}/versions").json()
    assert [v["version"] for v in versions] == [loop.base + 1, loop.base + 2]


def test_a_corrupted_artifact_yields_a_failure_event_and_no_version(
    loop: Loop, two_versions: list[tuple[t.TrainingRequested, Any, Any, Any]]
) -> None:
    _request, _started, trained, _registered = two_versions[1]
    corrupted = loop.root / "corrupted-package"
    shutil.copytree(trained.artifact_uri, corrupted)
    weights = corrupted / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4] + b"\x00\x00\x80\x7f")
    forged = replace(
        trained,
        meta=new_meta("test", cause=trained),
        artifact_uri=str(corrupted),
    )

    loop.bus.publish(forged)

    [failed] = loop.bus.wait_for(
        MODEL, t.RegistrationFailed, where=lambda e: e.meta.causation_id == forged.meta.event_id
    )
    assert failed.reason.startswith(f"package at {corrupted} failed verification: ")
    assert "sha256 mismatch in weights.safetensors" in failed.reason
    assert failed.meta.correlation_id == trained.meta.correlation_id
    assert not [
        e
        for e in loop.bus.lifecycle(MODEL)
        if isinstance(e, t.ModelRegistered) and e.meta.causation_id == forged.meta.event_id
    ]
    versions = loop.api.get(f"/v1/models/{MODEL}/versions").json()
    assert [v["version"] for v in versions] == [loop.base + 1, loop.base + 2]


def _is_a_commit(sha: str) -> bool:
    probe = subprocess.run(["git", "cat-file", "-e", f"{sha}^{{commit}}"], cwd=REPO, check=False)
    return len(sha) == 40 and probe.returncode == 0

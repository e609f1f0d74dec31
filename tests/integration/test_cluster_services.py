"""Every service keeps acting through a leader change of the lifecycle partition.

Registry, trainer, deployer and monitor run as processes on a three-broker cluster of this
module's own, with labelled traffic and v1's results sent by the test. The broker leading
``modelbus.lifecycle`` is SIGKILLed between two trainings; the second training must still run
its whole chain (trainer, registry, deployer) and the monitor must go on writing health
windows, with no service restarted.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from modelbus.config import KafkaSettings
from modelbus.events import new_meta
from modelbus.events import types as t
from modelbus.events.meta import now_utc
from tests.support.broker import Bus, DedicatedKafka, create_model_topics, dedicated_kafka
from tests.support.monitor import Traffic, health_events, start_monitor
from tests.support.packages import credit_rows
from tests.support.ports import free_port
from tests.support.processes import http_ready, registry_env, service, stop_workers
from tests.support.waiting import NotYet, eventually

pytestmark = [pytest.mark.integration, pytest.mark.cluster]
REPO = Path(__file__).resolve().parents[2]
MODEL = "credit"  # the cluster is this module's own, so the contract's own name is free
LIFECYCLE = "modelbus.lifecycle"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DedicatedKafka]:
    with dedicated_kafka(tmp_path_factory.mktemp("cluster-services"), brokers=3) as running:
        yield running


class SteadyTraffic:
    """Requests, v1's results and labels (the test plays inference), ~100 a second, until stopped.

    Inference's own liveness through a broker kill is test_cluster's concern; here the monitor
    must go on reading and writing while the lifecycle's leader changes.
    """

    def __init__(self, settings: KafkaSettings) -> None:
        self.traffic = Traffic(settings, MODEL, seed=5)
        self.rows, self.labels = credit_rows(2_000, seed=5)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._send, daemon=True)

    def _send(self) -> None:
        sent = 0
        while not self.stop.wait(0.2):
            start = sent % len(self.rows)
            chunk = slice(start, start + 20)
            self.traffic.send(self.rows[chunk], self.labels[chunk], first=sent, version=1)
            sent += 20

    def __enter__(self) -> SteadyTraffic:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(60)


def _training(seed: int) -> t.TrainingRequested:
    return t.TrainingRequested(
        meta=new_meta("operator@test"), model=MODEL, reason="cluster test",
        requested_by="test", seed=seed, max_rows=None,
    )  # fmt: skip


def _health_after(bootstrap: str, since: datetime, version: int) -> t.ModelHealth:
    windows = [
        w for w in health_events(bootstrap, MODEL)
        if w.version == version and w.window_start >= since and w.requests > 0
    ]  # fmt: skip
    if not windows:
        raise NotYet(f"no ModelHealth window of v{version} starting after {since}")
    return windows[0]


@pytest.mark.timeout(900)  # two trainings on 2 shared cores; each wait below has its own limit
def test_registry_trainer_deployer_and_monitor_act_through_a_lifecycle_leader_change(
    cluster: DedicatedKafka, tmp_path: Path
) -> None:
    from mlflow import MlflowClient

    settings = KafkaSettings(bootstrap_servers=cluster.bootstrap, data_partitions=4)
    create_model_topics(settings, MODEL)
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    MlflowClient(tracking_uri=tracking_uri).search_experiments()
    port = free_port()
    (tmp_path / "registry").mkdir()
    registry = registry_env(
        cluster.bootstrap, tmp_path / "registry", port=port, tracking_uri=tracking_uri,
        group_id="cluster-registry",
    )  # fmt: skip
    trainer = {
        "MODELBUS_BOOTSTRAP_SERVERS": cluster.bootstrap,
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MODELBUS_TRAINER_GROUP_ID": "cluster-trainer",
        "MODELBUS_TRAINER_RUN_DIR": str(tmp_path / "trainer"),
        "MODELBUS_TRAINER_MLFLOW_ARTIFACT_ROOT": str(tmp_path / "mlartifacts"),
        "MODELBUS_TRAINER_REFERENCE_ROWS": "1500",
        "MODELBUS_TRAINER_PRODUCTION_ROWS": "0",
        "MODELBUS_TRAINER_EPOCHS": "2",
        "MODELBUS_TRAINER_HIDDEN": "[16]",
        "MODELBUS_TRAINER_REPO_DIR": str(REPO),
    }
    deployer = {
        "MODELBUS_BOOTSTRAP_SERVERS": cluster.bootstrap,
        "MODELBUS_DEPLOYER_GROUP_ID": "cluster-deployer",
        "MODELBUS_DEPLOYER_MODELS_PATTERN": MODEL,
    }
    bus = Bus(settings, "cluster-services-test")
    url = f"http://127.0.0.1:{port}"
    registry_ready = http_ready(f"{url}/healthz")
    with (
        service("modelbus_registry", registry, tmp_path / "registry", ready=registry_ready),
        service("modelbus_trainer", trainer, tmp_path) as trainer_process,
        service("modelbus_deployer", deployer, tmp_path) as deployer_process,
    ):  # fmt: skip
        monitor = start_monitor(cluster.bootstrap, MODEL)
        victim: int | None = None
        try:
            first = _training(seed=11)
            bus.publish(first)
            same = {"where": lambda e: e.meta.correlation_id == first.meta.correlation_id}
            bus.wait_for(MODEL, t.ModelRegistered, timeout_s=240, **same)
            bus.wait_for(MODEL, t.ModelPromoted, timeout_s=120, **same)
            with SteadyTraffic(settings):
                traffic_from = now_utc()
                eventually(lambda: _health_after(cluster.bootstrap, traffic_from, 1), 120)
                victim = cluster.leader_of(LIFECYCLE)
                cluster.broker("kill-broker", victim)
                killed_at = now_utc()
                second = _training(seed=12)
                bus.publish(second)
                same = {"where": lambda e: e.meta.correlation_id == second.meta.correlation_id}
                [started] = bus.wait_for(MODEL, t.TrainingStarted, timeout_s=120, **same)
                [trained] = bus.wait_for(MODEL, t.ModelTrained, timeout_s=240, **same)
                [registered] = bus.wait_for(MODEL, t.ModelRegistered, timeout_s=120, **same)
                [rollout] = bus.wait_for(MODEL, t.RolloutStarted, timeout_s=120, **same)
                health = eventually(lambda: _health_after(cluster.bootstrap, killed_at, 1), 120)
            assert cluster.leader_of(LIFECYCLE) != victim
            assert started.meta.causation_id == second.meta.event_id
            assert trained.meta.causation_id == second.meta.event_id
            assert registered.version == 2
            assert registered.meta.causation_id == trained.meta.event_id
            assert (rollout.candidate_version, rollout.champion_version) == (2, 1)
            assert health.window_start >= killed_at
            listed = httpx.get(f"{url}/v1/models/{MODEL}/versions").json()
            assert sorted(v["version"] for v in listed) == [1, 2]
            alive = {"trainer": trainer_process, "deployer": deployer_process, "monitor": monitor}
            assert {name for name, p in alive.items() if p.poll() is not None} == set()
        finally:
            stop_workers([monitor])
            if victim is not None:
                cluster.broker("start-broker", victim)

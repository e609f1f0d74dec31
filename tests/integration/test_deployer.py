"""Canary rollouts on the real broker: real inference, monitor and deployer processes.

Live labelled traffic flows the whole time (requests at a steady rate, each labelled as soon as
it is answered). A first version is promoted outright; a second as good as the first walks
every step and is promoted; a third, wrong on one slice of the inputs (a fifth of them), is
rolled back at the first step, after which only the champion answers.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelbus.bus import LIFECYCLE_TOPIC
from modelbus.bus.reading import read_events, read_topic
from modelbus.cli.traffic import LiveTraffic
from modelbus.events import types as t
from tests.support.broker import create_model_topics, publish_lifecycle, request_codec
from tests.support.events import registered
from tests.support.monitor import start_monitor
from tests.support.packages import CONTRACT, build_credit_package
from tests.support.processes import REPO, start_worker, stop_workers
from tests.support.waiting import NotYet, eventually

pytestmark = pytest.mark.integration


def start_deployer(bootstrap: str, model: str, group: str, **env: str) -> subprocess.Popen[bytes]:
    """``python -m modelbus_deployer run`` with a quick policy, as a real process."""
    environment = {
        **os.environ,
        "MODELBUS_BOOTSTRAP_SERVERS": bootstrap,
        "MODELBUS_DEPLOYER_GROUP_ID": group,
        "MODELBUS_DEPLOYER_MODELS_PATTERN": model,
        "MODELBUS_DEPLOYER_MIN_REQUESTS": "100",
        "MODELBUS_DEPLOYER_MIN_LABELLED": "100",
        "MODELBUS_DEPLOYER_MIN_BAKE_S": "2",
        "MODELBUS_DEPLOYER_MAX_ERROR_RATE_INCREASE": "0.02",
        "MODELBUS_DEPLOYER_MAX_ACCURACY_DROP": "0.05",
        "MODELBUS_DEPLOYER_MAX_LOG_LOSS_INCREASE": "0.5",
        **env,
    }
    return subprocess.Popen([sys.executable, "-m", "modelbus_deployer", "run"], env=environment,
                            cwd=REPO)  # fmt: skip


class Lifecycle:
    """Reads one model's lifecycle events as they land."""

    def __init__(self, bootstrap: str, model: str) -> None:
        self.bootstrap, self.model, self.codec = bootstrap, model, request_codec()

    def events(self) -> list[Any]:
        return [
            e
            for e in read_events(self.bootstrap, LIFECYCLE_TOPIC, self.codec, key=self.model)
            if getattr(e, "model", None) == self.model
        ]

    def wait_for(self, kind: type, version: int, timeout_s: float) -> Any:
        def found() -> Any:
            for event in self.events():
                if isinstance(event, kind) and getattr(event, "version", None) == version:
                    return event
            raise NotYet(f"no {kind.__name__} for v{version}")

        return eventually(found, timeout_s=timeout_s)


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> dict[int, tuple[Path, str]]:
    root = tmp_path_factory.mktemp("rollout-packages")
    built = {}
    for version, extra in ((1, {}), (2, {}), (3, {"flip_where": ("elevel", 0)})):
        directory = root / f"v{version}"
        built[version] = (directory, build_credit_package(directory, seed=1, n_rows=4000,
                                                          epochs=60, **extra))  # fmt: skip
    return built


@pytest.fixture
def rollout_world(kafka_settings, unique: str) -> Iterator[tuple[str, LiveTraffic, Lifecycle]]:  # type: ignore[no-untyped-def]
    model = f"canary{unique}"
    bootstrap = kafka_settings.bootstrap_servers
    create_model_topics(kafka_settings, model)
    processes = [
        start_worker(bootstrap, model, MODELBUS_INFERENCE_SERVE_LATEST_WITHOUT_ROUTES="false"),
        start_monitor(bootstrap, model),
        start_deployer(bootstrap, model, f"test-deployer-{unique}"),
    ]
    traffic = LiveTraffic(kafka_settings, request_codec(), model=model, rate_per_s=400, seed=5,
                          contract=CONTRACT)  # fmt: skip
    try:
        yield model, traffic, Lifecycle(bootstrap, model)
    finally:
        traffic.stop(drain_s=10)
        stop_workers(processes)


def test_a_good_candidate_is_promoted_and_a_bad_one_rolled_back_at_the_first_step(
    kafka_settings, rollout_world, packages
) -> None:  # type: ignore[no-untyped-def]
    model, traffic, lifecycle = rollout_world
    codec = request_codec()
    publish_lifecycle(kafka_settings, codec, registered(model, 1, *packages[1]))
    first = lifecycle.wait_for(t.ModelPromoted, 1, timeout_s=60)
    assert first.reason.startswith("first version")
    traffic.enter("v1")
    traffic.start()
    eventually(lambda: traffic.tally.count("v1") >= 1_000 or _not_yet("v1 answers"), timeout_s=60)

    traffic.enter("v2 rollout")
    publish_lifecycle(kafka_settings, codec, registered(model, 2, *packages[2]))
    promoted = lifecycle.wait_for(t.ModelPromoted, 2, timeout_s=180)
    two = [e for e in lifecycle.events() if getattr(e, "candidate_version", None) == 2]
    steps = [e.step_pct for e in two if isinstance(e, t.CanaryEvaluated) and e.verdict == "pass"]
    assert steps == [5.0, 25.0, 50.0]
    assert promoted.previous_version == 1
    assert all(e.verdict != "fail" for e in two if isinstance(e, t.CanaryEvaluated))

    traffic.enter("v3 rollout")
    publish_lifecycle(kafka_settings, codec, registered(model, 3, *packages[3]))
    rolled = lifecycle.wait_for(t.ModelRolledBack, 3, timeout_s=180)
    assert rolled.restored_version == 2
    (failed,) = [e for e in lifecycle.events()
                 if isinstance(e, t.CanaryEvaluated) and e.candidate_version == 3
                 and e.verdict == "fail"]  # fmt: skip
    assert failed.step_pct == 5.0
    assert "accuracy" in {g.name for g in failed.guardrails if g.verdict == "fail"}
    assert min(g.candidate_samples for g in failed.guardrails if g.name == "accuracy") >= 100

    traffic.enter("after rollback")
    eventually(
        lambda: traffic.tally.count("after rollback") >= 2_000 or _not_yet("answers"), timeout_s=60
    )
    answered_by_v3_after = traffic.tally.count("after rollback", 3)
    assert answered_by_v3_after == 0, f"v3 answered {answered_by_v3_after} requests after rollback"
    assert traffic.duplicates == 0
    assert traffic.tally.count("v3 rollout", 3) > 0  # v3 did serve its canary share


def test_a_manual_rollback_moves_all_traffic_within_a_second(
    kafka_settings, rollout_world, packages
) -> None:  # type: ignore[no-untyped-def]
    model, _traffic, lifecycle = rollout_world
    codec = request_codec()
    publish_lifecycle(kafka_settings, codec, registered(model, 1, *packages[1]))
    lifecycle.wait_for(t.ModelPromoted, 1, timeout_s=60)
    publish_lifecycle(kafka_settings, codec, registered(model, 2, *packages[2]))
    eventually(
        lambda: (
            any(isinstance(e, t.RolloutStarted) for e in lifecycle.events())
            or _not_yet("RolloutStarted")
        ),
        timeout_s=60,
    )
    asked = t.RollbackRequested(
        meta=_meta(), model=model, to_version=None, requested_by="test", reason="stop the canary"
    )
    publish_lifecycle(kafka_settings, codec, asked)
    rolled = lifecycle.wait_for(t.ModelRolledBack, 2, timeout_s=30)
    assert rolled.meta.causation_id == asked.meta.event_id
    assert rolled.reason == "operator test: stop the canary"
    # When each message reached the log (its Kafka timestamp), not when the test noticed.
    landed = {
        envelope.headers.get("modelbus-type", b"").decode(): envelope.timestamp_ms
        for envelope in read_topic(kafka_settings.bootstrap_servers, LIFECYCLE_TOPIC)
        if envelope.key == model.encode()
    }
    shifted_ms = landed["modelbus.events.TrafficShifted"]  # the last shift: back to v1
    assert shifted_ms - landed["modelbus.events.RollbackRequested"] < 1_000
    shift = [e for e in lifecycle.events() if isinstance(e, t.TrafficShifted)][-1]
    assert [(r.version, r.weight_pct) for r in shift.routes] == [(1, 100.0)]


def _meta() -> t.EventMeta:
    from modelbus.events import new_meta

    return new_meta("operator@test")


def _not_yet(what: str) -> bool:
    raise NotYet(f"not yet: {what}")

"""Canary rollouts on the real broker: real inference, monitor and deployer processes.

ModelHealth comes from the real monitor (``python -m modelbus_monitor run``), never computed
here. Live labelled traffic flows the whole time (requests at a steady rate, each labelled as
soon as it is answered). A first version is promoted outright; a second as good as the first
walks every step and is promoted; a third, wrong on one slice of the inputs (a fifth of them),
is rolled back at the first step, after which only the champion answers. An operator's
rollback lands within a second. Killing the active deployer mid-rollout hands the rollout to
its standby at the same step, and a restarted deployer resumes where the log left off, with
each decision on the log once."""

from __future__ import annotations

import getpass
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from modelbus.bus import LIFECYCLE_TOPIC, data_topic
from modelbus.bus.reading import read_events, read_topic
from modelbus.bus.security import client_config
from modelbus.bus.topics import shadow_topic
from modelbus.cli.traffic import LiveTraffic
from modelbus.events import types as t
from tests.support.broker import create_model_topics, publish_lifecycle, request_codec
from tests.support.events import registered
from tests.support.monitor import start_monitor
from tests.support.packages import CONTRACT, build_credit_package
from tests.support.processes import REPO, start_worker, stop_workers
from tests.support.waiting import NotYet, eventually

# Real processes on a shared 2-core box: a rollout takes minutes when the machine is loaded.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


def start_deployer(
    bootstrap: str, model: str, group: str, stderr: Any = None, **env: str
) -> subprocess.Popen[bytes]:
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
        # A loaded 2-core CI box queues requests for seconds: keep the relative p99 guardrail
        # (candidate vs champion) and lift the absolute ceiling, a production SLO.
        "MODELBUS_DEPLOYER_LATENCY_P99_CEILING_MS": "120000",
        **env,
    }
    return subprocess.Popen([sys.executable, "-m", "modelbus_deployer", "run"], env=environment,
                            cwd=REPO, stderr=stderr)  # fmt: skip


class Lifecycle:
    """Reads one model's lifecycle events as they land."""

    def __init__(self, bootstrap: str, model: str, processes: list[Any]) -> None:
        self.bootstrap, self.model, self.codec = bootstrap, model, request_codec()
        self.processes = processes
        """The world's processes; a test adds the ones it starts so they are stopped too."""

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

    def wait_for_pass(self, candidate: int, step_pct: float, timeout_s: float) -> Any:
        def found() -> Any:
            for event in self.events():
                if (
                    isinstance(event, t.CanaryEvaluated)
                    and (event.candidate_version, event.step_pct) == (candidate, step_pct)
                    and event.verdict == "pass"
                ):
                    return event
            raise NotYet(f"no pass for v{candidate} at {step_pct:g}%")

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
        yield model, traffic, Lifecycle(bootstrap, model, processes)
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
    eventually(lambda: traffic.tally.count("v1") >= 1_000 or _not_yet("v1 answers"), timeout_s=180)

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
    environment = {**os.environ, "MODELBUS_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers}
    cli = subprocess.run(
        [sys.executable, "-m", "modelbus.cli", "rollback", model, "--reason", "stop the canary",
         "--wait-s", "60"],
        env=environment, cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert f"decided: {model} v2 rolled back to v1" in cli.stdout
    (asked,) = [e for e in lifecycle.events() if isinstance(e, t.RollbackRequested)]
    assert asked.requested_by == f"{getpass.getuser()}@cli"
    rolled = lifecycle.wait_for(t.ModelRolledBack, 2, timeout_s=30)
    assert rolled.meta.causation_id == asked.meta.event_id
    assert rolled.reason == f"operator {asked.requested_by}: stop the canary"
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


def test_a_killed_deployer_is_replaced_by_its_standby_and_a_restart_resumes_the_same_step(
    kafka_settings, rollout_world, packages, unique: str
) -> None:  # type: ignore[no-untyped-def]
    """SIGKILL the active deployer at 25%: the standby takes over within seconds and goes on
    from 25%; SIGKILL that one at 50% and start a fresh one: it resumes at 50%. The log holds
    each decision once (no step repeated, no id twice)."""
    model, traffic, lifecycle = rollout_world
    bootstrap, codec = kafka_settings.bootstrap_servers, request_codec()
    group = f"test-deployer-{unique}"
    deployers = [lifecycle.processes[-1], start_deployer(bootstrap, model, group)]
    lifecycle.processes.append(deployers[1])
    admin = AdminClient(client_config(bootstrap))
    eventually(lambda: _members_holding(admin, group, members=2), timeout_s=60)
    publish_lifecycle(kafka_settings, codec, registered(model, 1, *packages[1]))
    lifecycle.wait_for(t.ModelPromoted, 1, timeout_s=60)
    traffic.enter("v1")
    traffic.start()
    eventually(lambda: traffic.tally.count("v1") >= 1_000 or _not_yet("v1 answers"), timeout_s=180)
    publish_lifecycle(kafka_settings, codec, registered(model, 2, *packages[2]))
    first = lifecycle.wait_for_pass(2, 5.0, timeout_s=120)
    # Which of the two joined first and holds the log: the one whose pid signs the decision.
    (active,) = [d for d in deployers if first.meta.producer.endswith(f":{d.pid}")]
    (standby,) = [d for d in deployers if d is not active]

    active.kill()
    active.wait()
    killed_at = time.monotonic()
    eventually(lambda: _members_holding(admin, group, members=1), timeout_s=30)
    took_over_s = time.monotonic() - killed_at
    assert took_over_s < 15, f"the standby took {took_over_s:.1f}s to hold the lifecycle log"
    second = lifecycle.wait_for_pass(2, 25.0, timeout_s=120)
    assert second.meta.producer.endswith(f":{standby.pid}")

    standby.kill()
    standby.wait()
    lifecycle.processes.append(start_deployer(bootstrap, model, group))
    promoted = lifecycle.wait_for(t.ModelPromoted, 2, timeout_s=120)
    third = lifecycle.wait_for_pass(2, 50.0, timeout_s=5)
    # The 50% step needs a bake and fresh windows after its shift; the kill lands well before.
    assert third.meta.producer not in {first.meta.producer, second.meta.producer}
    assert promoted.meta.producer == third.meta.producer

    events = lifecycle.events()
    ids = [e.meta.event_id for e in events]
    assert len(ids) == len(set(ids))
    rollouts = [e for e in events if isinstance(e, t.RolloutStarted)]
    assert [e.candidate_version for e in rollouts] == [2]
    passes = [
        e.step_pct for e in events if isinstance(e, t.CanaryEvaluated) and e.verdict == "pass"
    ]
    assert passes == [5.0, 25.0, 50.0]
    shares = [
        sum(r.weight_pct for r in e.routes if r.version == 2)
        for e in events
        if isinstance(e, t.TrafficShifted) and any(r.version == 2 for r in e.routes)
    ]
    assert shares == [5.0, 25.0, 50.0, 100.0]
    assert [e.version for e in events if isinstance(e, t.ModelPromoted)] == [1, 2]


@pytest.fixture
def shadow_world(kafka_settings, unique: str) -> Iterator[tuple[str, LiveTraffic, Lifecycle]]:  # type: ignore[no-untyped-def]
    model = f"shadow{unique}"
    bootstrap = kafka_settings.bootstrap_servers
    create_model_topics(kafka_settings, model)
    processes = [
        start_worker(bootstrap, model, MODELBUS_INFERENCE_SERVE_LATEST_WITHOUT_ROUTES="false"),
        start_monitor(bootstrap, model),
        start_deployer(bootstrap, model, f"test-deployer-{unique}", MODELBUS_DEPLOYER_SHADOW="1"),
    ]
    traffic = LiveTraffic(kafka_settings, request_codec(), model=model, rate_per_s=400, seed=7,
                          contract=CONTRACT)  # fmt: skip
    try:
        yield model, traffic, Lifecycle(bootstrap, model, processes)
    finally:
        traffic.stop(drain_s=10)
        stop_workers(processes)


@pytest.mark.timeout(300)
def test_a_bad_candidate_is_rolled_back_in_the_shadow_step_having_answered_no_caller(
    kafka_settings, shadow_world, packages
) -> None:  # type: ignore[no-untyped-def]
    model, traffic, lifecycle = shadow_world
    codec = request_codec()
    publish_lifecycle(kafka_settings, codec, registered(model, 1, *packages[1]))
    lifecycle.wait_for(t.ModelPromoted, 1, timeout_s=60)
    traffic.enter("v1")
    traffic.start()
    eventually(lambda: traffic.tally.count("v1") >= 400 or _not_yet("v1 answers"), timeout_s=120)

    traffic.enter("v3 shadow")
    publish_lifecycle(kafka_settings, codec, registered(model, 3, *packages[3]))
    rolled = lifecycle.wait_for(t.ModelRolledBack, 3, timeout_s=180)
    assert rolled.restored_version == 1
    events = lifecycle.events()
    (started,) = [e for e in events if isinstance(e, t.RolloutStarted)]
    assert started.policy is not None
    assert started.policy.shadow is True
    shifts = [e for e in events if isinstance(e, t.TrafficShifted)]
    routes = [[(r.variant, r.version, r.weight_pct) for r in e.routes] for e in shifts]
    assert routes[-2:] == [[("champion", 1, 100.0), ("shadow", 3, 0.0)], [("champion", 1, 100.0)]]
    judged = [e for e in events if isinstance(e, t.CanaryEvaluated) and e.candidate_version == 3]
    assert {(e.step_index, e.step_pct) for e in judged} == {(-1, 0.0)}
    (failed,) = [e for e in judged if e.verdict == "fail"]
    assert "accuracy" in {g.name for g in failed.guardrails if g.verdict == "fail"}
    assert min(g.candidate_samples for g in failed.guardrails if g.name == "accuracy") >= 100

    traffic.enter("after rollback")
    eventually(
        lambda: traffic.tally.count("after rollback") >= 400 or _not_yet("answers"), timeout_s=60
    )
    bootstrap = kafka_settings.bootstrap_servers
    answered = [r for r in read_events(bootstrap, data_topic(model, "predictions"), codec)
                if isinstance(r, t.PredictionResult)]  # fmt: skip
    mirrored = [r for r in read_events(bootstrap, shadow_topic(model), codec)
                if isinstance(r, t.PredictionResult)]  # fmt: skip
    assert len(answered) >= 800
    assert {(r.version, r.variant) for r in answered} == {(1, "champion")}
    assert {(r.version, r.variant) for r in mirrored} == {(3, "shadow")}
    assert len(mirrored) >= 100
    assert {r.request_id for r in mirrored} <= {r.request_id for r in answered}
    assert traffic.tally.count("v3 shadow", 3) == traffic.tally.count("after rollback", 3) == 0


def _members_holding(admin: Any, group: str, *, members: int) -> bool:
    """True once the group has ``members`` members and one of them holds the lifecycle log."""
    (future,) = admin.describe_consumer_groups([group]).values()
    try:
        described = future.result(timeout=5)
    except (TimeoutError, KafkaException) as error:  # a loaded broker: ask again
        raise NotYet(f"group {group} not described: {error!r}") from error
    holding = [m for m in described.members if m.assignment and m.assignment.topic_partitions]
    if len(described.members) == members and len(holding) == 1:
        return True
    raise NotYet(f"{len(described.members)} member(s), {len(holding)} holding the log")


def _not_yet(what: str) -> bool:
    raise NotYet(f"not yet: {what}")

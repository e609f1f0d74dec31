"""Signed inputs on the real broker: the deployer and the trainer act only on their owners' events.

A forged (unsigned) ModelRegistered and one signed by the monitor's key are dead-lettered by a
real deployer process with the reason and start no rollout; so are an unsigned ModelLoadFailed
and one signed by the monitor's key, which roll nothing back, while the ModelLoadFailed a real
inference worker signs when the canary's package is missing does. An unsigned DriftDetected and
one signed by the deployer's key are dead-lettered by the trainer and start no training. Each
test then sends the genuine event: the lifecycle log is one ordered partition, so once the
genuine event's decision is on the log, the forged ones before it were handled, without a sleep.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelbus.bus import LIFECYCLE_TOPIC, Publisher
from modelbus.config import KafkaSettings
from modelbus.events import new_meta
from modelbus.events import types as t
from modelbus.packaging import package_sha256
from modelbus_trainer.bootstrap import bootstrap
from modelbus_trainer.config import Settings
from tests.support.broker import (
    lifecycle_dead_letters,
    lifecycle_events,
    publish_lifecycle,
    request_codec,
    start_at_log_end,
)
from tests.support.events import registered
from tests.support.packages import credit_rows, untrained_package
from tests.support.processes import REPO, start_worker, stop_workers
from tests.support.signing import signer
from tests.support.waiting import NotYet, eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
NO_PACKAGE = (Path("/nonexistent/package"), "0" * 64)  # the deployer never opens a package


def _forge(settings: KafkaSettings, event: Any, role: str | None) -> None:
    """Publish ``event`` unsigned (``role`` None) or signed by ``role``'s key."""
    publisher = Publisher(
        settings,
        request_codec(),
        client_id=f"test-forger-{uuid.uuid4()}",
        signer=None if role is None else signer(role),
    )
    publisher.publish(event)
    publisher.flush()


def _wait_for(bootstrap_servers: str, model: str, kind: type, what: str, **fields: Any) -> list:
    """``model``'s lifecycle events of ``kind`` with these ``fields``, once there is one."""

    def found() -> list:
        events = [
            event
            for event in lifecycle_events(bootstrap_servers, request_codec(), model, (kind,))
            if all(getattr(event, name) == value for name, value in fields.items())
        ]
        if not events:
            raise NotYet(f"no {what} yet")
        return events

    return eventually(found, timeout_s=60)


@pytest.fixture
def deployer(kafka_settings: KafkaSettings, unique: str) -> Iterator[str]:
    """A real deployer process watching one model of its own; yields the model."""
    model = f"signed{unique}"
    environment = {
        **os.environ,
        "MODELBUS_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
        "MODELBUS_DEPLOYER_GROUP_ID": f"test-signed-deployer-{unique}",
        "MODELBUS_DEPLOYER_MODELS_PATTERN": model,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "modelbus_deployer", "run"], env=environment, cwd=REPO
    )
    try:
        yield model
    finally:
        stop_workers([process])


def test_the_deployer_dead_letters_forged_registrations_and_starts_no_rollout_for_them(
    kafka_settings: KafkaSettings, deployer: str
) -> None:
    model, bootstrap_servers = deployer, kafka_settings.bootstrap_servers
    codec = request_codec()
    publish_lifecycle(kafka_settings, codec, registered(model, 1, *NO_PACKAGE))
    _wait_for(bootstrap_servers, model, t.ModelPromoted, "promotion of v1", version=1)  # live now

    unsigned, by_monitor = registered(model, 2, *NO_PACKAGE), registered(model, 2, *NO_PACKAGE)
    _forge(kafka_settings, unsigned, None)
    _forge(kafka_settings, by_monitor, "monitor")
    genuine = registered(model, 3, *NO_PACKAGE)
    publish_lifecycle(kafka_settings, codec, genuine)
    (started,) = _wait_for(
        bootstrap_servers, model, t.RolloutStarted, "rollout of v3", candidate_version=3
    )
    letters = lifecycle_dead_letters(bootstrap_servers, request_codec(), model, 2)

    assert started.meta.causation_id == genuine.meta.event_id
    assert started.champion_version == 1
    decisions = lifecycle_events(
        bootstrap_servers,
        codec,
        model,
        (t.RolloutStarted, t.TrafficShifted, t.CanaryEvaluated, t.ModelPromoted),
    )
    causes = {event.meta.causation_id for event in decisions}
    assert unsigned.meta.event_id not in causes
    assert by_monitor.meta.event_id not in causes
    assert all(2 not in [r.version for r in getattr(e, "routes", [])] for e in decisions)
    assert sorted((letter.error_type, letter.source_topic) for letter in letters) == [
        ("UnsignedEvent", LIFECYCLE_TOPIC),
        ("WrongSigner", LIFECYCLE_TOPIC),
    ]
    assert sorted(letter.reason.split(": ", 1)[1] for letter in letters) == [
        "ModelRegistered carries no signature; it must come from registry",
        "ModelRegistered signed by 'monitor'; only registry may sign it",
    ]
    assert {letter.meta.producer.split("@")[0] for letter in letters} == {"deployer"}
    # The deployer's own audit leaves the forged triggers out, as the deployer did.
    env = {**os.environ, "MODELBUS_BOOTSTRAP_SERVERS": bootstrap_servers}
    command = [sys.executable, "-m", "modelbus_deployer", "verify", "--model", model, "--json"]
    verified = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True,
                              timeout=60)  # fmt: skip
    result = json.loads(verified.stdout)
    assert result["findings"] == [], result["findings"]  # a rollout of v2 would be "missing"
    assert result["decisions"] == result["matched"] == len(decisions)


def _load_failed(model: str, version: int) -> t.ModelLoadFailed:
    return t.ModelLoadFailed(meta=new_meta("inference@forger"), model=model, version=version,
                             worker="inference@forger", reason="forged")  # fmt: skip


def test_the_deployer_rolls_a_canary_back_only_on_the_load_failure_inference_signed(
    kafka_settings: KafkaSettings, deployer: str, tmp_path: Path
) -> None:
    model, bootstrap_servers = deployer, kafka_settings.bootstrap_servers
    codec = request_codec()
    rows, labels = credit_rows(200, seed=1)
    package, _ = untrained_package(tmp_path / "v1", rows, labels)
    publish_lifecycle(kafka_settings, codec, registered(model, 1, package, package_sha256(package)))
    _wait_for(bootstrap_servers, model, t.ModelPromoted, "promotion of v1", version=1)
    publish_lifecycle(kafka_settings, codec, registered(model, 2, *NO_PACKAGE))
    _wait_for(bootstrap_servers, model, t.RolloutStarted, "rollout of v2", candidate_version=2)

    unsigned, by_monitor = _load_failed(model, 2), _load_failed(model, 2)
    _forge(kafka_settings, unsigned, None)
    _forge(kafka_settings, by_monitor, "monitor")
    letters = lifecycle_dead_letters(bootstrap_servers, codec, model, 2)
    # A real worker serves v1 and cannot load the canary v2 (its package does not exist).
    worker = start_worker(bootstrap_servers, model,
                          MODELBUS_INFERENCE_SERVE_LATEST_WITHOUT_ROUTES="false")  # fmt: skip
    try:
        (rolled,) = _wait_for(bootstrap_servers, model, t.ModelRolledBack, "rollback", version=2)
    finally:
        stop_workers([worker])

    forged = {unsigned.meta.event_id, by_monitor.meta.event_id}
    failures = lifecycle_events(bootstrap_servers, codec, model, (t.ModelLoadFailed,))
    genuine = [failure for failure in failures if failure.meta.event_id not in forged]
    assert {(failure.version, failure.meta.producer.split("@")[0]) for failure in genuine} == {
        (2, "inference-0")
    }
    assert rolled.meta.causation_id == genuine[0].meta.event_id
    assert rolled.restored_version == 1
    assert rolled.reason.startswith("candidate failed to load: ")
    assert "/nonexistent/package" in rolled.reason
    assert sorted((letter.error_type, letter.source_topic) for letter in letters) == [
        ("UnsignedEvent", LIFECYCLE_TOPIC),
        ("WrongSigner", LIFECYCLE_TOPIC),
    ]
    assert sorted(letter.reason.split(": ", 1)[1] for letter in letters) == [
        "ModelLoadFailed carries no signature; it must come from inference",
        "ModelLoadFailed signed by 'monitor'; only inference may sign it",
    ]
    assert {letter.meta.producer.split("@")[0] for letter in letters} == {"deployer"}
    env = {**os.environ, "MODELBUS_BOOTSTRAP_SERVERS": bootstrap_servers}
    # The deployer's own audit leaves the forged failures out, as the deployer did: the one
    # rollback is the one the genuine failure called for.
    command = [sys.executable, "-m", "modelbus_deployer", "verify", "--model", model, "--json"]
    verified = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True,
                              timeout=60)  # fmt: skip
    assert json.loads(verified.stdout)["findings"] == []
    # `modelbus audit` names both forgeries and leaves them out of the timeline.
    command = [sys.executable, "-m", "modelbus.cli", "audit", "--model", model, "--json",
               "--no-artifacts"]  # fmt: skip
    audited = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True,
                             timeout=60)  # fmt: skip
    refused = [p for p in json.loads(audited.stdout)["problems"] if "ModelLoadFailed" in p]
    assert sorted(problem.split(": ", 1)[1] for problem in refused) == [
        "UnsignedEvent: ModelLoadFailed carries no signature; it must come from inference",
        "WrongSigner: ModelLoadFailed signed by 'monitor'; only inference may sign it",
    ]


@pytest.fixture
def trainer(kafka_settings: KafkaSettings, unique: str, tmp_path: Path) -> Iterator[str]:
    """A trainer of one model of its own (no data contract: a job it starts fails at once)."""
    model = f"signed{unique}"
    group_id = f"test-signed-trainer-{unique}"
    start_at_log_end(kafka_settings.bootstrap_servers, group_id)  # earlier triggers are not ours
    settings = Settings(
        kafka=kafka_settings,
        group_id=group_id,
        models_pattern=re.escape(model),
        run_dir=tmp_path / "trainer",
        mlflow_tracking_uri=f"sqlite:///{tmp_path}/mlflow.db",
        mlflow_artifact_root=tmp_path / "mlartifacts",
        drift_data_wait_s=1,
        worker="inline",
        repo_dir=REPO,
    )
    app = bootstrap(settings)
    stop = threading.Event()
    thread = threading.Thread(target=app.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield model
    finally:
        stop.set()
        thread.join(timeout=60)


def _drift(model: str) -> t.DriftDetected:
    return t.DriftDetected(
        meta=new_meta("monitor@test"), model=model, version=None, kind="concept", evidence=[],
        onset_at=None, episode_id=f"episode-{uuid.uuid4()}", onset_offsets=[],
    )  # fmt: skip


def test_the_trainer_dead_letters_unsigned_drift_alerts_and_starts_no_training_for_them(
    kafka_settings: KafkaSettings, trainer: str
) -> None:
    model, bootstrap_servers = trainer, kafka_settings.bootstrap_servers
    unsigned, by_deployer, genuine = _drift(model), _drift(model), _drift(model)
    _forge(kafka_settings, unsigned, None)
    _forge(kafka_settings, by_deployer, "deployer")
    _forge(kafka_settings, genuine, "monitor")
    _wait_for(bootstrap_servers, model, t.TrainingStarted, "training")
    letters = lifecycle_dead_letters(bootstrap_servers, request_codec(), model, 2)

    started = lifecycle_events(bootstrap_servers, request_codec(), model, (t.TrainingStarted,))
    assert [event.meta.causation_id for event in started] == [genuine.meta.event_id]
    assert sorted((letter.error_type, letter.source_topic) for letter in letters) == [
        ("UnsignedEvent", LIFECYCLE_TOPIC),
        ("WrongSigner", LIFECYCLE_TOPIC),
    ]
    assert sorted(letter.reason.split(": ", 1)[1] for letter in letters) == [
        "DriftDetected carries no signature; it must come from monitor",
        "DriftDetected signed by 'deployer'; only monitor may sign it",
    ]

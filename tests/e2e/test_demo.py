"""`modelbus demo --fast` end to end: the five services on a broker of the test's own.

The demo tells its story on an empty log, so this test gives it a fresh native broker (the
session's broker holds other tests' `credit` events). It asserts the story from the log itself,
not from what the demo printed: v2 promoted in the loop a monitor's DriftDetected started, v3
rolled back after a failed canary judgement, and every request answered exactly once (every
result of both topics counted, read to their end offsets). Then the auditors' tools run over
the demo's log as an operator would: `modelbus audit --model credit` (a replay of the lifecycle
log filtered to the model) finds no problem, the deployer's `verify` re-derives every decision
from the logged health windows, and `modelbus audit predictions` reproduces 1,000 randomly
chosen answers bit for bit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelbus.bus import LIFECYCLE_TOPIC, data_topic
from modelbus.bus.reading import read_topic
from modelbus.bus.schema_topic import kafka_schema_store
from modelbus.cli.story import Story
from modelbus.events import GenericRecord, build_codec
from modelbus.events import types as t
from tests.support.broker import dedicated_kafka

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def fresh_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(bootstrap servers, run dir) of a broker started for this module alone (with the
    session's security: ``make test`` runs the suite secured)."""
    run_dir = tmp_path_factory.mktemp("demo")
    with dedicated_kafka(run_dir) as broker:
        yield broker.bootstrap, run_dir


@pytest.fixture(scope="module")
def demo_run(fresh_broker: tuple[str, Path]) -> tuple[str, subprocess.CompletedProcess[str]]:
    bootstrap, run_dir = fresh_broker
    env = {**os.environ, "MODELBUS_BOOTSTRAP_SERVERS": bootstrap, "MODELBUS_RUN_DIR": str(run_dir)}
    finished = subprocess.run(
        [sys.executable, "-m", "modelbus.cli", "demo", "--fast"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=840,
    )
    return bootstrap, finished


def _events(bootstrap: str, topic: str) -> list:
    codec = build_codec(kafka_schema_store(bootstrap), models=("credit",))
    events = []
    for envelope in read_topic(bootstrap, topic):
        event = codec.decode(envelope.value or b"", where=envelope.where)
        if not isinstance(event, GenericRecord):
            events.append(event)
    return events


@pytest.mark.timeout(900)
def test_the_demo_tells_the_whole_story_from_drift_to_rollback(demo_run) -> None:  # type: ignore[no-untyped-def]
    bootstrap, finished = demo_run
    assert finished.returncode == 0, finished.stdout[-6000:] + finished.stderr[-3000:]

    story = Story.read("credit", _events(bootstrap, LIFECYCLE_TOPIC))
    assert sorted(story.chapters) == [1, 2, 3]
    assert story.problems(first=1, retrained=2, bad=3) == []
    drift = story.monitor_drift()
    assert drift is not None
    promoted = story.chapters[2].promoted
    assert promoted is not None
    assert promoted.meta.correlation_id == drift.meta.correlation_id
    assert promoted.meta.occurred_at > drift.meta.occurred_at
    rolled_back = story.chapters[3].rolled_back
    assert rolled_back is not None
    assert rolled_back.restored_version == 2
    assert any(g.verdict == "fail" for v in story.chapters[3].verdicts for g in v.guardrails)


@pytest.mark.timeout(900)
def test_every_demo_request_was_answered_exactly_once(demo_run) -> None:  # type: ignore[no-untyped-def]
    bootstrap, finished = demo_run
    assert finished.returncode == 0
    requests = {
        e.request_id
        for e in _events(bootstrap, data_topic("credit", "requests"))
        if isinstance(e, t.PredictionRequest)
    }
    answers = Counter(
        e.request_id
        for e in _events(bootstrap, data_topic("credit", "predictions"))
        if isinstance(e, t.PredictionResult)
    )
    assert len(requests) > 5_000
    assert set(answers) == requests
    assert set(answers.values()) == {1}


def _cli(bootstrap: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MODELBUS_BOOTSTRAP_SERVERS": bootstrap}
    return subprocess.run(
        [sys.executable, "-m", *args], env=env, cwd=REPO, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip


@pytest.mark.timeout(900)
def test_the_audit_of_the_demo_log_replayed_for_its_model_finds_no_problem(demo_run) -> None:  # type: ignore[no-untyped-def]
    bootstrap, finished = demo_run
    assert finished.returncode == 0
    audited = _cli(bootstrap, "modelbus.cli", "audit", "--model", "credit", "--json")
    assert audited.returncode == 0, audited.stdout[-4000:] + audited.stderr[-2000:]
    report = json.loads(audited.stdout)
    codec = build_codec(kafka_schema_store(bootstrap), models=("credit",))
    keyed = [
        codec.decode(e.value or b"", where=e.where)
        for e in read_topic(bootstrap, LIFECYCLE_TOPIC)
        if e.key == b"credit"
    ]
    assert report["problems"] == []
    assert report["events"] == len([e for e in keyed if not isinstance(e, GenericRecord)]) > 0
    assert [(v["model"], v["version"]) for v in report["versions"]] == [
        ("credit", 1), ("credit", 2), ("credit", 3)
    ]  # fmt: skip
    assert report["decisions"]


@pytest.mark.timeout(900)
def test_the_deployer_re_derives_every_decision_of_the_demo(demo_run) -> None:  # type: ignore[no-untyped-def]
    bootstrap, finished = demo_run
    assert finished.returncode == 0
    verified = _cli(bootstrap, "modelbus_deployer", "verify", "--model", "credit", "--json")
    assert verified.returncode == 0, verified.stdout[-4000:] + verified.stderr[-2000:]
    result = json.loads(verified.stdout)
    decisions = [
        e for e in _events(bootstrap, LIFECYCLE_TOPIC)
        if isinstance(e, (t.RolloutStarted, t.TrafficShifted, t.CanaryEvaluated,
                          t.ModelPromoted, t.ModelRolledBack))
        and e.model == "credit"
    ]  # fmt: skip
    assert result["findings"] == []
    assert result["decisions"] == result["matched"] == len(decisions)


@pytest.mark.timeout(900)
def test_one_thousand_random_demo_answers_are_reproduced_bit_for_bit(demo_run) -> None:  # type: ignore[no-untyped-def]
    bootstrap, finished = demo_run
    assert finished.returncode == 0
    reproduced = _cli(bootstrap, "modelbus.cli", "audit", "predictions", "--model", "credit",
                      "--sample", "1000", "--seed", "2026", "--json")  # fmt: skip
    assert reproduced.returncode == 0, reproduced.stdout[-4000:] + reproduced.stderr[-2000:]
    summary = json.loads(reproduced.stdout)
    print("audit predictions:", json.dumps(summary))
    assert (summary["sampled"], summary["compared"], summary["identical"]) == (1000, 1000, 1000)
    assert sorted(summary["versions"]) == ["1", "2", "3"]

"""The monitor as a real process on the real broker: drift alerts, health windows, restarts."""

from __future__ import annotations

import signal
from collections import defaultdict
from pathlib import Path
from typing import NoReturn

import numpy as np
import pytest

from modelbus.bus.reading import read_events
from modelbus.bus.topics import data_topic
from modelbus.data import generate_credit
from modelbus.events import types as t
from tests.support.broker import create_model_topics, publish_lifecycle, request_codec
from tests.support.events import registered
from tests.support.monitor import (
    Traffic,
    drift_events,
    health_covering,
    start_monitor,
)
from tests.support.processes import stop_workers
from tests.support.waiting import NotYet, eventually

pytestmark = pytest.mark.integration


def _watched(kafka_settings, model: str, package: tuple[Path, str]) -> None:
    create_model_topics(kafka_settings, model)
    publish_lifecycle(kafka_settings, request_codec(), registered(model, 1, *package))


def _expected_windows(bootstrap: str, model: str, window_s: float) -> dict:
    codec = request_codec()
    results = {
        r.request_id: r
        for r in read_events(bootstrap, data_topic(model, "predictions"), codec)
        if isinstance(r, t.PredictionResult)
    }
    labels = [f for f in read_events(bootstrap, data_topic(model, "feedback"), codec)]
    latencies: dict[tuple, list[float]] = defaultdict(list)
    correct: dict[tuple, list[int]] = defaultdict(list)
    for result in results.values():
        start = np.floor(result.meta.occurred_at.timestamp() / window_s) * window_s
        latencies[(result.version, result.variant, start)].append(result.timings.total_ms)
    for label in labels:
        result = results[label.request_id]
        start = np.floor(label.observed_at.timestamp() / window_s) * window_s
        correct[(result.version, result.variant, start)].append(int(result.label == label.label))
    return {
        key: (
            len(latencies.get(key, [])),
            len(correct.get(key, [])),
            sum(correct.get(key, [])),
            tuple(np.quantile(latencies[key], (0.5, 0.99))) if key in latencies else (0.0, 0.0),
        )
        for key in set(latencies) | set(correct)
    }


def test_stationary_labelled_traffic_raises_no_drift_and_health_matches_the_topics(
    kafka_settings, unique: str, package_v1: tuple[Path, str]
) -> None:
    model = f"credit{unique}"
    _watched(kafka_settings, model, package_v1)
    bootstrap = kafka_settings.bootstrap_servers
    rows, labels = generate_credit(50_000, seed=21)
    monitor = start_monitor(bootstrap, model)
    try:
        Traffic(kafka_settings, model).send(rows, labels)
        windows = eventually(health_covering(bootstrap, model, len(rows)), timeout_s=120)
    finally:
        stop_workers([monitor])
    assert drift_events(bootstrap, model) == []
    expected = _expected_windows(bootstrap, model, 2.0)
    seen = {
        (w.version, w.variant, w.window_start.timestamp()): (
            w.requests, w.labelled, w.correct, (w.latency_p50_ms, w.latency_p99_ms),
        )
        for w in windows
    }  # fmt: skip
    assert len(seen) == len(windows)
    assert seen.keys() == expected.keys()
    for key, (requests, labelled, correct, quantiles) in expected.items():
        assert seen[key][:3] == (requests, labelled, correct)
        assert seen[key][3] == pytest.approx(quantiles)


def _request_numbers(bootstrap: str, model: str, offsets: list[t.PartitionOffset]) -> list[int]:
    from confluent_kafka import TopicPartition

    from modelbus.bus.reading import read_only_consumer

    consumer = read_only_consumer(bootstrap, purpose="test-onset")
    numbers = []
    try:
        for position in offsets:
            tp = TopicPartition(data_topic(model, "requests"), position.partition, position.offset)
            consumer.assign([tp])
            message = eventually(lambda: consumer.poll(1.0) or _not_yet(), timeout_s=30)
            numbers.append(int(message.key().decode()[1:]))
    finally:
        consumer.close()
    return numbers


def _not_yet() -> NoReturn:
    raise NotYet("no message yet")


def _one_drift(bootstrap: str, model: str, kind: str):
    def check() -> list[t.DriftDetected]:
        found = [d for d in drift_events(bootstrap, model) if d.kind == kind]
        if not found:
            raise NotYet(f"no {kind} drift yet")
        return found

    return check


def test_a_model_registered_later_with_a_one_sigma_salary_shift_gets_one_covariate_alert(
    kafka_settings, unique: str, package_v1: tuple[Path, str]
) -> None:
    model = f"credit{unique}"
    bootstrap = kafka_settings.bootstrap_servers
    monitor = start_monitor(bootstrap, model)
    try:
        _watched(kafka_settings, model, package_v1)
        rows, _ = generate_credit(10_000, seed=31)
        for row in rows[6_000:]:
            row["salary"] += 130_000 / np.sqrt(12)
        traffic = Traffic(kafka_settings, model)
        traffic.send(rows, None)
        traffic.requests.producer.produce(data_topic(model, "predictions"), b"\x00junk", b"bad")
        traffic.requests.flush()
        eventually(health_covering(bootstrap, model, len(rows)), timeout_s=120)
        dead = eventually(lambda: _dead_letters(bootstrap, model) or _not_yet(), timeout_s=30)
    finally:
        stop_workers([monitor])
    drifts = drift_events(bootstrap, model)
    covariate = [d for d in drifts if d.kind == "covariate"]
    assert len(covariate) == 1
    assert [e.feature for e in covariate[0].evidence] == ["salary"]
    assert covariate[0].version == 1
    assert covariate[0].meta.correlation_id == covariate[0].meta.event_id
    assert all(
        abs(n - 6_000) <= 500
        for n in _request_numbers(bootstrap, model, covariate[0].onset_offsets)
    )
    assert [(d.source_topic, d.key) for d in dead] == [(data_topic(model, "predictions"), b"bad")]
    assert dead[0].reason.startswith(f"{data_topic(model, 'predictions')}[")


def _dead_letters(bootstrap: str, model: str) -> list[t.DeadLetter]:
    return [
        d
        for d in read_events(bootstrap, data_topic(model, "dlq"), request_codec())
        if isinstance(d, t.DeadLetter)
    ]


@pytest.mark.timeout(600)  # three waits of up to 120 s each, sized for a loaded machine
def test_a_rule_switch_killed_monitor_and_restarts_give_exactly_one_concept_alert_at_the_switch(
    kafka_settings, unique: str, package_v1: tuple[Path, str]
) -> None:
    model = f"credit{unique}"
    _watched(kafka_settings, model, package_v1)
    bootstrap = kafka_settings.bootstrap_servers
    before, before_labels = generate_credit(5_000, seed=41)
    after, after_labels = generate_credit(4_000, seed=42, classification_function=2)
    traffic = Traffic(kafka_settings, model)
    monitor = start_monitor(bootstrap, model)
    try:
        traffic.send(before, before_labels)
        eventually(health_covering(bootstrap, model, 5_000), timeout_s=120)
        monitor.send_signal(signal.SIGKILL)
        monitor.wait()
        traffic.send(after[:3_000], after_labels[:3_000], first=5_000)
        monitor = start_monitor(bootstrap, model)
        (alert,) = eventually(_one_drift(bootstrap, model, "concept"), timeout_s=120)
        monitor.send_signal(signal.SIGKILL)
        monitor.wait()
        monitor = start_monitor(bootstrap, model)
        traffic.send(after[3_000:], after_labels[3_000:], first=8_000)
        windows = eventually(health_covering(bootstrap, model, 9_000), timeout_s=120)
    finally:
        stop_workers([monitor])
    concept = [d for d in drift_events(bootstrap, model) if d.kind == "concept"]
    assert [d.episode_id for d in concept] == [alert.episode_id]
    assert alert.evidence[0].feature == "__error__"
    assert alert.version == 1
    assert sorted(p.partition for p in alert.onset_offsets) == [0, 1, 2, 3]
    assert all(
        abs(n - 5_000) <= 500 for n in _request_numbers(bootstrap, model, alert.onset_offsets)
    )
    keys = [(w.version, w.variant, w.window_start) for w in windows]
    assert len(keys) == len(set(keys))
    assert sum(w.requests for w in windows) == 9_000
    assert sum(w.labelled for w in windows) == 9_000

"""The monitor as a real process on the real broker: drift alerts, health windows, restarts."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from modelbus.bus.reading import read_events
from modelbus.bus.topics import data_topic
from modelbus.data import generate_credit
from modelbus.events import types as t
from tests.support.broker import create_model_topics, publish_lifecycle, request_codec
from tests.support.events import registered
from tests.support.monitor import Traffic, drift_events, health_events, start_monitor
from tests.support.processes import stop_workers
from tests.support.waiting import NotYet, eventually

pytestmark = pytest.mark.integration


def _watched(kafka_settings, model: str, package: tuple[Path, str]) -> None:  # type: ignore[no-untyped-def]
    create_model_topics(kafka_settings, model)
    publish_lifecycle(kafka_settings, request_codec(), registered(model, 1, *package))


def _health_covers(bootstrap: str, model: str, results: int):  # type: ignore[no-untyped-def]
    def check() -> list[t.ModelHealth]:
        windows = health_events(bootstrap, model)
        if sum(w.requests for w in windows) < results:
            raise NotYet(f"health covers {sum(w.requests for w in windows)} of {results}")
        return windows

    return check


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
    rows, labels = generate_credit(20_000, seed=21)
    monitor = start_monitor(bootstrap, model)
    try:
        Traffic(kafka_settings, model).send(rows, labels)
        windows = eventually(_health_covers(bootstrap, model, len(rows)), timeout_s=120)
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

"""The monitor's pure domain: detectors, episodes, onsets and joins on seeded streams."""

from __future__ import annotations

import numpy as np
import pytest

from modelbus.events import load_contract
from modelbus.packaging import build_profile
from modelbus_monitor.domain import Alert, ModelMonitor
from modelbus_monitor.evidence import Gates, Where
from modelbus_monitor.joins import JoinBuffer, Labelled, ResultFacts, Served
from modelbus_monitor.reference import reference_from_profile

SALARY_STD = 130_000 / np.sqrt(12)


def _rows(n: int, seed: int, salary_shift: float = 0.0) -> list[dict]:
    rng = np.random.default_rng(seed)
    salary = rng.uniform(20_000, 150_000, n) + salary_shift
    return [
        {
            "salary": float(salary[i]),
            "commission": 0.0 if salary[i] >= 75_000 else float(rng.uniform(10_000, 75_000)),
            "age": int(rng.integers(20, 81)),
            "elevel": int(rng.integers(0, 5)),
            "car": int(rng.integers(1, 21)),
            "zipcode": int(rng.integers(0, 9)),
            "hvalue": float(rng.uniform(50_000, 900_000)),
            "hyears": int(rng.integers(1, 31)),
            "loan": float(rng.uniform(0, 500_000)),
        }
        for i in range(n)
    ]


def _label(row: dict, rule: int) -> int:
    if rule == 0:
        return int(row["age"] < 40 or row["age"] >= 60)
    return int(row["salary"] >= 75_000)


@pytest.fixture(scope="module")
def monitor_factory():
    reference = reference_from_profile(build_profile(_rows(3000, seed=1), load_contract("credit")))

    def make() -> ModelMonitor:
        monitor = ModelMonitor(
            "credit", Gates(), join_window_s=60, window_s=5, lateness_s=1,
            cooldown_s=600, rearm_after=2000,
        )  # fmt: skip
        monitor.register(1, reference)
        return monitor

    return make


def _stream(monitor: ModelMonitor, rows: list[dict], rule_of, start: int = 0) -> list[Alert]:
    alerts: list[Alert] = []
    for i, row in enumerate(rows, start):
        at_s = 1_000.0 + i * 0.01
        predicted = _label(row, 0)
        score = 0.8 if predicted else 0.2
        alerts += monitor.request(f"r{i}", row, Where(at_s, i % 4, i // 4))
        alerts += monitor.result(
            f"r{i}", ResultFacts(1, "champion", (1 - score, score), predicted, at_s, 3.0)
        )
        alerts += monitor.label(f"r{i}", _label(row, rule_of(i)), at_s)
    return alerts


def test_twenty_thousand_stationary_labelled_events_raise_no_alert(monitor_factory) -> None:
    monitor = monitor_factory()
    assert _stream(monitor, _rows(20_000, seed=2), lambda i: 0) == []


def test_a_one_sigma_salary_shift_raises_one_covariate_alert_naming_salary(monitor_factory) -> None:
    monitor = monitor_factory()
    rows = _rows(8_000, seed=3) + _rows(4_000, seed=4, salary_shift=SALARY_STD)
    alerts = _stream(monitor, rows, lambda i: 0)
    covariate = [a for a in alerts if a.finding.kind == "covariate"]
    assert len(covariate) == 1
    finding = covariate[0].finding
    assert [e.feature for e in finding.evidence] == ["salary"]
    assert 8_000 < finding.index < 9_000
    onset_index = round((finding.onset_at_s - 1_000.0) / 0.01)
    assert abs(onset_index - 8_000) <= 50
    assert finding.evidence[0].p_value is not None
    assert finding.evidence[0].p_value < 0.001
    assert finding.evidence[0].statistic > 0.8


def test_a_rule_switch_raises_one_concept_alert_whose_onset_points_at_the_switch(
    monitor_factory,
) -> None:
    monitor = monitor_factory()
    alerts = _stream(monitor, _rows(12_000, seed=5), lambda i: 0 if i < 8_000 else 1)
    concept = [a for a in alerts if a.finding.kind == "concept"]
    assert len(concept) == 1
    finding = concept[0].finding
    assert finding.evidence[0].feature == "__error__"
    # Request i sits at partition i % 4, offset i // 4: the switch is offset 2000 everywhere.
    assert all(abs(offset - 2_000) <= 125 for _, offset in finding.onset_offsets)
    assert [p for p, _ in finding.onset_offsets] == [0, 1, 2, 3]
    assert finding.index - 8_000 < 500


def test_a_replayed_drift_inside_the_cooldown_of_a_published_alert_is_not_repeated(
    monitor_factory,
) -> None:
    first, replayed = monitor_factory(), monitor_factory()
    rows = _rows(12_000, seed=5)
    alerts = _stream(first, rows, lambda i: 0 if i < 8_000 else 1)
    concept = next(a for a in alerts if a.finding.kind == "concept")
    replayed.remember_alert(1, "champion", "concept", concept.finding.at_s)
    again = _stream(replayed, rows, lambda i: 0 if i < 8_000 else 1)
    assert [a for a in again if a.finding.kind == "concept"] == []


def test_health_windows_hold_exact_counts_accuracy_and_quantiles(monitor_factory) -> None:
    monitor = monitor_factory()
    latencies = [1.0, 2.0, 3.0, 10.0]
    for i, latency in enumerate(latencies):
        facts = ResultFacts(1, "canary", (0.25, 0.75), 1, 10.0 + i, latency)
        monitor.result(f"q{i}", facts)
        monitor.label(f"q{i}", i % 2, 12.0)
    monitor.dead_letter(1, 11.0)
    assert monitor.close(15.5) == []
    (window,) = monitor.close(16.0)
    assert (window.version, window.variant, window.start_s, window.end_s) == (
        1,
        "canary",
        10.0,
        15.0,
    )
    assert (window.requests, window.labelled, window.correct, window.dead_letters) == (4, 4, 2, 1)
    assert window.accuracy == 0.5
    assert window.latency_p50_ms == 2.5
    assert window.latency_p99_ms == pytest.approx(9.79)
    assert window.latency_max_ms == 10.0
    assert window.log_loss == pytest.approx((-np.log(0.75) - np.log(0.25)) / 2)
    assert window.score_histogram == (0, 0, 0, 0, 0, 0, 0, 4, 0, 0)
    assert monitor.close(100.0) == []


def test_a_window_already_published_is_never_published_again(monitor_factory) -> None:
    monitor = monitor_factory()
    monitor.health.published(1, "champion", 15.0)
    monitor.result("a", ResultFacts(1, "champion", (0.5, 0.5), 1, 12.0, 1.0))
    monitor.result("b", ResultFacts(1, "champion", (0.5, 0.5), 1, 16.0, 1.0))
    assert [(w.start_s, w.requests) for w in monitor.close(30.0)] == [(15.0, 1)]
    assert monitor.health.late == 1


def test_joins_match_in_any_order_and_count_what_expired() -> None:
    joins = JoinBuffer(join_window_s=10.0)
    result = ResultFacts(2, "champion", (0.1, 0.9), 1, 5.0, 1.0)
    assert joins.label("a", 1, 6.0) == []
    assert joins.result("a", result) == [Labelled(result, 1, 6.0, None)]
    where = Where(4.0, 0, 7)
    assert joins.request("b", {"x": 1}, where) == []
    assert joins.result("b", result) == [Served({"x": 1}, where, result)]
    assert joins.result("c", result) == []
    late = Where(7.0, 1, 3)
    assert joins.request("a", {"x": 2}, late) == [
        Served({"x": 2}, late, result),
        Labelled(result, 1, 6.0, late, for_health=False),
    ]
    assert joins.expire(100.0) == 2
    assert dict(joins.expired) == {"no_label": 1, "no_request": 1}
    assert len(joins) == 0

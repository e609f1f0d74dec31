"""The inference benchmark's max-sustained-rate search, over a simulated system.

The simulated workers drain ``capacity`` requests/s and the simulated load generator sends at
most ``send_limit``/s; above capacity the backlog (and so latency) grows over the step.
"""

from __future__ import annotations

from typing import Any

import pytest

import benchmarks.inference as bench

STEP_S = 5.0


class SimulatedSystem:
    def __init__(self, capacity: float, send_limit: float, stalls: int = 0) -> None:
        self.capacity = capacity
        self.send_limit = send_limit
        self.stalls = stalls  # how many of the next steps get one stall over a second
        self.offered: list[float] = []

    def paced(
        self, settings: Any, model: Any, codec: Any, rate: float, seconds: float, **_: Any
    ) -> dict:
        self.offered.append(rate)
        sent = min(rate, self.send_limit)
        overload = max(0.0, 1 - self.capacity / sent)
        growth_ms = overload * seconds * 1000  # queueing delay added by the end of the step
        base = 20.0
        stalled = self.stalls > 0
        self.stalls -= stalled
        return {
            "offered_per_s": round(rate),
            "achieved_send_per_s": round(sent),
            "requests": int(sent * seconds),
            "results_seen": int(sent * seconds),
            "p50_ms": base + growth_ms / 2,
            "p99_ms": base + growth_ms,
            "max_ms": 1500.0 if stalled else base + growth_ms + 5,
            "p50_ms_first_quarter": base + growth_ms / 8,
            "p50_ms_last_quarter": base + growth_ms * 7 / 8,
        }


@pytest.fixture
def system(monkeypatch: pytest.MonkeyPatch) -> SimulatedSystem:
    simulated = SimulatedSystem(capacity=6_000, send_limit=100_000)
    monkeypatch.setattr(bench, "_paced_latency", simulated.paced)
    return simulated


def search(drain_rate: float) -> tuple[float, list[dict[str, Any]]]:
    return bench._sustained_rate(None, "m", None, drain_rate, STEP_S)  # type: ignore[arg-type]


def test_the_coarse_steps_are_narrowed_by_two_halvings(system: SimulatedSystem) -> None:
    rate, steps = search(10_000)

    # 9,000 and 7,500 fail, 6,000 (at capacity) is kept; then halvings between 6,000 and
    # 7,500: 6,750 fails, 6,375 (6% over capacity) fails.
    assert system.offered == [9_000, 7_500, 6_000, 6_750, 6_375]
    assert [step["kept_up"] for step in steps] == [False, False, True, False, False]
    assert rate == 6_000


def test_a_rate_slightly_over_capacity_is_not_kept_up(system: SimulatedSystem) -> None:
    system.capacity = 6_500
    rate, _ = search(10_000)

    # 6,750 is 3.8% over 6,500: its median grows by ~140 ms over the step.
    assert system.offered == [9_000, 7_500, 6_000, 6_750, 6_375]
    assert rate == 6_375


def test_the_answer_is_the_rate_sent_not_the_rate_asked(system: SimulatedSystem) -> None:
    system.send_limit = 5_200  # the load generator falls short; the workers keep up with it
    rate, steps = search(10_000)

    assert steps[0]["achieved_send_per_s"] == 5_200
    assert steps[0]["kept_up"]
    assert rate == 5_200


def test_one_stall_is_tried_again_before_going_down(system: SimulatedSystem) -> None:
    system.stalls = 1
    rate, steps = search(6_000 / 0.9)

    assert system.offered[:2] == [pytest.approx(6_000)] * 2
    assert steps[0]["retried"] == "one stall over 1 s"
    assert steps[1]["kept_up"]
    assert rate == 6_000


def test_a_growing_backlog_is_not_taken_for_a_stall(system: SimulatedSystem) -> None:
    system.capacity = 5_000
    system.stalls = 1
    _, steps = search(6_000 / 0.9)

    # 6,000/s against 5,000/s: latency grows, so the step fails without a second try.
    assert "retried" not in steps[0]
    assert not steps[0]["kept_up"]
    assert system.offered[1] == pytest.approx(6_000 / 0.9 * 0.75)

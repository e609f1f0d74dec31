"""The latency guardrail: a window's p99 is noise; only a ratio the windows agree on fails."""

from __future__ import annotations

from datetime import timedelta

import pytest

from modelbus.events import types as t
from modelbus_deployer.judge import Arm, guardrails
from tests.support.rollouts import POLICY, T0, health, registered, with_champion


def latency(candidate_p99s: list[float], champion_p99s: list[float]) -> list[t.GuardrailResult]:
    """The latency guardrail at each look, one more window pair per look."""
    candidate, champion, looks = Arm(), Arm(), []
    for k, (mine, theirs) in enumerate(zip(candidate_p99s, champion_p99s, strict=True), 1):
        at = T0 + timedelta(seconds=5 * k)
        candidate = candidate.add(health(2, "canary", at, p99=mine))
        champion = champion.add(health(1, "champion", at, p99=theirs))
        looks.append(next(g for g in guardrails(POLICY, candidate, champion, look=k)
                          if g.name == "latency_p99"))  # fmt: skip
    return looks


def test_a_candidate_three_times_slower_fails_once_the_windows_agree() -> None:
    looks = latency([30, 33, 27, 31, 29], [10] * 5)
    assert [g.verdict for g in looks] == ["wait", "wait", "wait", "fail", "fail"]
    assert looks[0].detail.endswith("(ratio 3.00 over 1 window, no bound from one window; "
                                    "ceiling 500 ms)")  # fmt: skip
    assert looks[3].detail.startswith("p99 30.2 ms vs 10.0 ms: above 1.5x with confidence")
    assert (looks[3].candidate, looks[3].champion, looks[3].threshold) == (30.25, 10.0, 1.5)


def test_one_slow_window_waits_and_the_next_ones_decide() -> None:
    """The numbers of a demo run that rolled a good model back on one window's p99."""
    looks = latency([72.4, 40.0, 42.0], [44.3, 45.0, 43.0])
    assert [g.verdict for g in looks] == ["wait", "pass", "pass"]
    assert "above 1.5x, but within the windows' noise (ratio 1.63" in looks[0].detail


def test_equal_latency_passes_at_the_first_window() -> None:
    assert [g.verdict for g in latency([11.0], [10.0])] == ["pass"]


@pytest.mark.parametrize("champion", [400.0, 600.0])
def test_a_candidate_over_the_ceiling_fails_at_once_whatever_the_champion(champion: float) -> None:
    (look,) = latency([600.0], [champion])
    assert look.verdict == "fail"
    assert "over the 500 ms ceiling" in look.detail


def test_sub_millisecond_latencies_are_not_judged_as_ratios() -> None:
    assert [g.verdict for g in latency([0.9, 0.8], [0.1, 0.1])] == ["pass", "pass"]


def test_a_rollout_waits_out_a_noisy_window_instead_of_rolling_back() -> None:
    run = with_champion()
    run.feed(registered(2, T0 + timedelta(seconds=1)))
    start = T0 + timedelta(seconds=5)
    run.feed(health(1, "champion", start, p99=44.3))
    (first,) = run.feed(health(2, "canary", start, p99=72.4))
    assert first.verdict == "wait"
    later = start + timedelta(seconds=5)
    run.feed(health(1, "champion", later, p99=45.0))
    second = run.feed(health(2, "canary", later, p99=40.0))
    assert [type(e).__name__ for e in second] == ["CanaryEvaluated", "TrafficShifted"]
    assert second[0].verdict == "pass"
    assert run.deployer.state("credit").rollout is not None

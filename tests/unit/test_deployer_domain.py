"""The deployer's fold: every transition of a rollout, restarts included, with no broker."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import pytest

from modelbus.events import types as t
from tests.support.rollouts import (
    POLICY,
    SHADOW_POLICY,
    T0,
    Run,
    health,
    meta,
    registered,
    with_champion,
)


def kinds(events: list[Any]) -> list[str]:
    return [type(e).__name__ for e in events]


def champion_of(run: Run) -> int | None:
    return run.deployer.state("credit").champion


def test_a_first_version_gets_all_traffic_and_is_promoted() -> None:
    run = Run()
    decided = run.feed(registered(1))
    assert kinds(decided) == ["TrafficShifted", "ModelPromoted"]
    assert [(r.variant, r.version, r.weight_pct) for r in decided[0].routes] == [
        ("champion", 1, 100.0)
    ]
    assert decided[1].meta.causation_id == decided[0].meta.event_id
    assert decided[0].meta.correlation_id == "loop-reg-1"
    assert champion_of(run) == 1


def test_a_good_candidate_walks_every_step_and_is_promoted() -> None:
    run = with_champion()
    started = run.feed(registered(2, T0 + timedelta(seconds=1)))
    assert kinds(started) == ["RolloutStarted", "TrafficShifted"]
    assert started[0].policy == POLICY
    shares = [started[1].routes[0].weight_pct]
    start = T0 + timedelta(seconds=5)
    for _ in range(3):
        decided = run.windows(2, 1, n=1, start=start)
        start += timedelta(seconds=5)
        assert decided[0].verdict == "pass", decided[0].reasons
        shifts = [d for d in decided if isinstance(d, t.TrafficShifted)]
        shares.append(next(r.weight_pct for r in shifts[0].routes if r.version == 2))
    assert shares == [5.0, 25.0, 50.0, 100.0]
    assert isinstance(run.log[-1], t.ModelPromoted)
    assert (run.log[-1].version, run.log[-1].previous_version) == (2, 1)
    assert run.log[-1].meta.correlation_id == started[0].meta.correlation_id == "loop-reg-2"
    assert champion_of(run) == 2


@pytest.mark.parametrize("failing_step", [0, 1, 2])
def test_a_bad_candidate_is_rolled_back_at_the_step_it_fails(failing_step: int) -> None:
    run = with_champion()
    run.feed(registered(2, T0 + timedelta(seconds=1)))
    start = T0 + timedelta(seconds=5)
    for _ in range(failing_step):
        run.windows(2, 1, n=1, start=start)
        start += timedelta(seconds=5)
    decided = run.windows(2, 1, n=1, start=start, candidate_accuracy=0.78)
    assert kinds(decided) == ["CanaryEvaluated", "TrafficShifted", "ModelRolledBack"]
    assert decided[0].step_index == failing_step
    assert decided[0].verdict == "fail"
    failed = [g for g in decided[0].guardrails if g.verdict == "fail"]
    assert [g.name for g in failed] == ["accuracy", "log_loss"]
    assert (failed[0].candidate, failed[0].champion) == (0.78, 0.95)
    assert [(r.variant, r.version, r.weight_pct) for r in decided[1].routes] == [
        ("champion", 1, 100.0)
    ]
    assert decided[2].restored_version == 1
    assert decided[2].reason.startswith("canary failed accuracy: worse by +0.1700")
    assert champion_of(run) == 1
    assert run.deployer.state("credit").rollout is None


def test_too_few_samples_wait_and_say_so() -> None:
    run = with_champion()
    run.feed(registered(2, T0 + timedelta(seconds=1)))
    at = T0 + timedelta(seconds=5)
    run.feed(health(1, "champion", at, requests=20))
    (decided,) = run.feed(health(2, "canary", at, requests=20))
    assert decided.verdict == "wait"
    error_rate = next(g for g in decided.guardrails if g.name == "error_rate")
    assert error_rate.detail.startswith("inconclusive: 20 candidate and 20 champion samples")


def test_a_window_of_one_arm_alone_is_not_judged() -> None:
    run = with_champion()
    run.feed(registered(2, T0 + timedelta(seconds=1)))
    assert run.feed(health(2, "canary", T0 + timedelta(seconds=5))) == []


def test_pinned_answers_are_never_canary_evidence() -> None:
    run = with_champion()
    run.feed(registered(2, T0 + timedelta(seconds=1)))
    at = T0 + timedelta(seconds=5)
    run.feed(health(1, "champion", at))
    assert run.feed(health(2, "pinned", at)) == []


def test_a_newer_registration_supersedes_the_rollout() -> None:
    run = with_champion()
    run.feed(registered(2, T0 + timedelta(seconds=1)))
    decided = run.feed(registered(3, T0 + timedelta(seconds=2)))
    assert kinds(decided) == [
        "TrafficShifted",
        "ModelRolledBack",
        "RolloutStarted",
        "TrafficShifted",
    ]
    assert decided[1].version == 2
    assert decided[1].reason == "superseded by v3"
    assert decided[2].candidate_version == 3
    assert run.deployer.state("credit").rollout.candidate == 3  # type: ignore[union-attr]


def test_a_candidate_that_fails_to_load_is_rolled_back_at_once() -> None:
    run = with_champion()
    run.feed(registered(2, T0 + timedelta(seconds=1)))
    failed = t.ModelLoadFailed(meta=meta("lf"), model="credit", version=2, worker="w0",
                               reason="sha256 mismatch")  # fmt: skip
    decided = run.feed(failed)
    assert kinds(decided) == ["TrafficShifted", "ModelRolledBack"]
    assert decided[1].reason == "candidate failed to load: sha256 mismatch"


def test_an_operator_promotes_or_rolls_back_during_and_outside_a_rollout() -> None:
    run = with_champion()
    run.feed(registered(2, T0 + timedelta(seconds=1)))
    ask = t.PromotionRequested(meta=meta("p"), model="credit", version=2,
                               requested_by="ana", reason="hotfix")  # fmt: skip
    decided = run.feed(ask)
    assert kinds(decided) == ["TrafficShifted", "ModelPromoted"]
    assert decided[1].reason == "operator ana: hotfix"
    assert champion_of(run) == 2
    back = t.RollbackRequested(meta=meta("b"), model="credit", to_version=None,
                               requested_by="ana", reason="regret")  # fmt: skip
    decided = run.feed(back)
    assert kinds(decided) == ["TrafficShifted", "ModelRolledBack"]
    assert (decided[1].version, decided[1].restored_version) == (2, 1)
    assert champion_of(run) == 1
    run.feed(registered(3, T0 + timedelta(seconds=3)))
    stop = t.RollbackRequested(meta=meta("s"), model="credit", to_version=None,
                               requested_by="ana", reason="stop the canary")  # fmt: skip
    decided = run.feed(stop)
    assert kinds(decided) == ["TrafficShifted", "ModelRolledBack"]
    assert decided[1].version == 3
    assert run.deployer.state("credit").rollout is None


def test_promoting_an_unknown_version_does_nothing() -> None:
    run = with_champion()
    ask = t.PromotionRequested(meta=meta("p"), model="credit", version=9,
                               requested_by="ana", reason="typo")  # fmt: skip
    assert run.feed(ask) == []


def test_a_silent_monitor_pauses_the_rollout_once_and_never_promotes() -> None:
    run = with_champion()
    run.feed(registered(2, T0 + timedelta(seconds=1)))
    paused = run.deployer.tick("credit", now=T0 + timedelta(seconds=40))
    assert kinds(paused) == ["CanaryEvaluated"]
    assert paused[0].verdict == "wait"
    assert paused[0].reasons[0].startswith("paused: no ModelHealth for 40s")
    assert run.deployer.tick("credit", now=T0 + timedelta(seconds=50)) == []
    assert champion_of(run) == 1


def _scripted_run() -> Run:
    run = with_champion()
    run.feed(registered(2, T0 + timedelta(seconds=1)))
    run.windows(2, 1, n=3, start=T0 + timedelta(seconds=5))
    return run


@pytest.mark.parametrize("cut", sorted(set(_scripted_run().boundaries)))
def test_a_restart_at_any_point_resumes_without_repeating_a_decision(cut: int) -> None:
    """Replay the log up to ``cut`` as the service does (deciding on each event, publishing
    only what the log lacks), then go on with the rest: no decision twice, none missing.

    Cuts fall between the decisions of one trigger, never inside them: the service writes
    each trigger's decisions in one Kafka transaction, so the log never holds half of them.
    """
    whole = _scripted_run()
    logged = whole.log[:cut]
    health_windows = [
        health(v, variant, T0 + timedelta(seconds=5 + 5 * k))
        for k in range(3)
        for v, variant in ((1, "champion"), (2, "canary"))
    ]
    restarted = Run()
    replayed: list[Any] = []
    for event in logged:
        replayed += restarted.deployer.decide(event, now=event.meta.occurred_at)
    on_log = {e.meta.event_id for e in logged}
    published = [d for d in replayed if d.meta.event_id not in on_log]
    for event in whole.log[cut:]:
        if event.meta.producer != "deployer@test":
            published += restarted.deployer.decide(event, now=T0)
    for window in health_windows:
        published += restarted.deployer.decide(window, now=window.window_end)
    ids = [e.meta.event_id for e in logged + published if e.meta.producer == "deployer@test"]
    assert len(ids) == len(set(ids)), "a decision was written twice"
    assert set(ids) == {e.meta.event_id for e in whole.log if e.meta.producer == "deployer@test"}
    assert champion_of(restarted) == 2


def test_decision_ids_depend_only_on_their_cause() -> None:
    first, second = _scripted_run(), _scripted_run()
    assert [e.meta.event_id for e in first.log] == [e.meta.event_id for e in second.log]
    assert dataclasses.asdict(first.log[-1]) == dataclasses.asdict(second.log[-1])


def routes_of(shift: t.TrafficShifted) -> list[tuple[str, int, float]]:
    return [(r.variant, r.version, r.weight_pct) for r in shift.routes]


def test_a_shadow_step_keeps_every_caller_on_the_champion_and_mirrors_to_the_candidate() -> None:
    run = with_champion(SHADOW_POLICY)
    started = run.feed(registered(2, T0 + timedelta(seconds=1)))
    assert kinds(started) == ["RolloutStarted", "TrafficShifted"]
    assert started[0].policy.shadow is True
    assert routes_of(started[1]) == [("champion", 1, 100.0), ("shadow", 2, 0.0)]
    assert run.deployer.state("credit").rollout.shadowing  # type: ignore[union-attr]


def test_a_passed_shadow_step_moves_to_the_first_weighted_step() -> None:
    run = with_champion(SHADOW_POLICY)
    run.feed(registered(2, T0 + timedelta(seconds=1)))
    decided = run.windows(2, 1, n=1, start=T0 + timedelta(seconds=5), variant="shadow")
    assert kinds(decided) == ["CanaryEvaluated", "TrafficShifted"]
    assert (decided[0].verdict, decided[0].step_index, decided[0].step_pct) == ("pass", -1, 0.0)
    assert decided[0].metrics["candidate_results"] == 1000.0
    assert routes_of(decided[1]) == [("canary", 2, 5.0), ("champion", 1, 95.0)]
    assert decided[1].reason == "canary v2 passed the shadow step; now 5%"
    rollout = run.deployer.state("credit").rollout
    assert rollout is not None
    assert not rollout.shadowing
    assert rollout.step == 0
    assert rollout.windows == {}


def test_shadow_answers_are_evidence_only_during_the_shadow_step() -> None:
    run = with_champion(SHADOW_POLICY)
    run.feed(registered(2, T0 + timedelta(seconds=1)))
    at = T0 + timedelta(seconds=5)
    run.feed(health(1, "champion", at))
    assert run.feed(health(2, "canary", at)) == []  # nobody is served by a canary yet
    run.windows(2, 1, n=1, start=T0 + timedelta(seconds=10), variant="shadow")
    later = T0 + timedelta(seconds=15)
    run.feed(health(1, "champion", later))
    assert run.feed(health(2, "shadow", later)) == []
    judged = run.feed(health(2, "canary", later))[0]
    assert (judged.step_index, judged.step_pct) == (0, 5.0)


def test_a_failed_shadow_step_rolls_back_before_any_caller_is_served_by_the_candidate() -> None:
    run = with_champion(SHADOW_POLICY)
    run.feed(registered(2, T0 + timedelta(seconds=1)))
    decided = run.windows(
        2, 1, n=1, start=T0 + timedelta(seconds=5), candidate_accuracy=0.78, variant="shadow"
    )
    assert kinds(decided) == ["CanaryEvaluated", "TrafficShifted", "ModelRolledBack"]
    assert (decided[0].verdict, decided[0].step_index) == ("fail", -1)
    assert routes_of(decided[1]) == [("champion", 1, 100.0)]
    assert decided[2].reason.startswith("canary failed accuracy: worse by +0.1700")
    shifts = [e for e in run.log if isinstance(e, t.TrafficShifted)]
    served = [r for s in shifts for r in s.routes if r.version == 2 and r.weight_pct > 0]
    assert served == []
    assert champion_of(run) == 1
    assert run.deployer.state("credit").rollout is None


def test_a_restart_during_the_shadow_step_resumes_it() -> None:
    run = with_champion(SHADOW_POLICY)
    run.feed(registered(2, T0 + timedelta(seconds=1)))
    restarted = Run(SHADOW_POLICY)
    on_log = {e.meta.event_id for e in run.log}
    for event in run.log:
        decided = restarted.deployer.decide(event, now=event.meta.occurred_at)
        assert {d.meta.event_id for d in decided} <= on_log
    rollout = restarted.deployer.state("credit").rollout
    assert rollout is not None
    assert rollout.shadowing
    decided = restarted.windows(2, 1, n=1, start=T0 + timedelta(seconds=5), variant="shadow")
    assert routes_of(decided[1]) == [("canary", 2, 5.0), ("champion", 1, 95.0)]

"""The deployer's verify: a log's decisions re-derived by the pure fold, every mismatch named."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import Any

from modelbus.events import types as t
from modelbus_deployer.domain import Deployer
from modelbus_deployer.verify import verify
from tests.support.rollouts import POLICY, T0, health, registered


class Live:
    """A deployer as it runs: triggers decided a little after they are read, all logged."""

    def __init__(self) -> None:
        self.deployer = Deployer(producer="deployer@live:1", policy=POLICY)
        self.lifecycle: list[Any] = []
        self.health: list[t.ModelHealth] = []

    def register(self, version: int, at: datetime) -> None:
        event = registered(version, at)
        self.lifecycle.append(event)
        self.lifecycle += self.deployer.decide(event, now=at + timedelta(milliseconds=40))

    def windows(self, candidate: int, champion: int, start: datetime, n: int,
                accuracy: float = 0.95) -> None:  # fmt: skip
        for k in range(n):
            at = start + timedelta(seconds=5 * k)
            for window in (health(champion, "champion", at),
                           health(candidate, "canary", at, accuracy=accuracy)):  # fmt: skip
                published = window.window_end + timedelta(milliseconds=200)
                window = dataclasses.replace(
                    window, meta=dataclasses.replace(window.meta, occurred_at=published)
                )
                self.health.append(window)
                now = published + timedelta(milliseconds=30)
                self.lifecycle += self.deployer.decide(window, now=now)


def rollout_log() -> Live:
    """v1 promoted first; v2 walks every step to promotion; v3 fails and is rolled back."""
    live = Live()
    live.register(1, T0)
    live.register(2, T0 + timedelta(seconds=1))
    live.windows(2, 1, T0 + timedelta(seconds=5), n=8)
    live.register(3, T0 + timedelta(seconds=61))
    live.windows(3, 2, T0 + timedelta(seconds=65), n=4, accuracy=0.78)
    return live


def of_type(live: Live, kind: type) -> list[Any]:
    return [e for e in live.lifecycle if isinstance(e, kind)]


def test_a_correct_rollout_verifies_clean() -> None:
    live = rollout_log()
    assert [e.version for e in of_type(live, t.ModelPromoted)] == [1, 2]
    assert [e.version for e in of_type(live, t.ModelRolledBack)] == [3]
    result = verify(live.lifecycle, live.health)
    decisions = len(live.lifecycle) - 3
    assert (result.findings, result.decisions, result.matched) == ([], decisions, decisions)


def test_an_altered_canary_verdict_is_named() -> None:
    live = rollout_log()
    passed = of_type(live, t.CanaryEvaluated)[0]
    assert passed.verdict == "pass"
    at = live.lifecycle.index(passed)
    live.lifecycle[at] = dataclasses.replace(passed, verdict="fail")
    findings = verify(live.lifecycle, live.health).findings
    assert [(f.kind, f.event_type, f.event_id) for f in findings] == [
        ("altered", "CanaryEvaluated", passed.meta.event_id)
    ]
    assert findings[0].detail == "verdict: logged 'fail', fold 'pass'"


def test_a_forged_promotion_is_named() -> None:
    live = rollout_log()
    started = of_type(live, t.RolloutStarted)[-1]
    forged = t.ModelPromoted(
        meta=dataclasses.replace(started.meta, event_id="forged-1", causation_id=None),
        model="credit", version=3, previous_version=2, reason="canary passed every step",
    )  # fmt: skip
    live.lifecycle.insert(live.lifecycle.index(started) + 2, forged)
    findings = verify(live.lifecycle, live.health).findings
    assert [(f.kind, f.event_type, f.event_id) for f in findings] == [
        ("not-made", "ModelPromoted", "forged-1")
    ]


def test_a_dropped_rollback_is_named() -> None:
    live = rollout_log()
    dropped = of_type(live, t.ModelRolledBack)[0]
    live.lifecycle.remove(dropped)
    findings = verify(live.lifecycle, live.health).findings
    assert [(f.kind, f.event_type, f.event_id) for f in findings] == [
        ("missing", "ModelRolledBack", dropped.meta.event_id)
    ]


def test_altered_routes_of_a_traffic_shift_are_named() -> None:
    live = rollout_log()
    shift = of_type(live, t.TrafficShifted)[2]
    at = live.lifecycle.index(shift)
    routes = [dataclasses.replace(r, weight_pct=100.0 - r.weight_pct) for r in shift.routes]
    live.lifecycle[at] = dataclasses.replace(shift, routes=routes)
    findings = verify(live.lifecycle, live.health).findings
    assert [(f.kind, f.event_id) for f in findings] == [("altered", shift.meta.event_id)]
    assert findings[0].detail.startswith("routes: logged")


def test_a_redelivered_decision_is_not_a_finding_and_other_models_are_left_out() -> None:
    live = rollout_log()
    promoted = of_type(live, t.ModelPromoted)[-1]
    live.lifecycle.append(promoted)
    result = verify(live.lifecycle, live.health, model="credit")
    assert result.ok
    assert result.matched == result.decisions
    assert verify(live.lifecycle, live.health, model="other").decisions == 0


def test_a_timer_pause_verifies_at_its_logged_time_within_a_second_and_not_long_before() -> None:
    live = Live()
    live.register(1, T0)
    live.register(2, T0 + timedelta(seconds=1))
    paused = live.deployer.tick("credit", now=T0 + timedelta(seconds=60))
    assert [p.verdict for p in paused] == ["wait"]
    live.lifecycle += paused
    assert verify(live.lifecycle, live.health).findings == []
    started = of_type(live, t.TrafficShifted)[-1].meta.occurred_at
    for at, kinds in (
        (started + timedelta(seconds=29.5), []),
        (T0 + timedelta(seconds=2), ["not-made"]),
    ):
        early = dataclasses.replace(
            paused[0], meta=dataclasses.replace(paused[0].meta, occurred_at=at)
        )
        live.lifecycle[-1] = early
        assert [f.kind for f in verify(live.lifecycle, live.health).findings] == kinds

"""The demo's verdict is read from the log: each missing chapter is named."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

from modelbus.cli.story import Story
from modelbus.events import example_event
from modelbus.events import types as t

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Log:
    """Builds one model's lifecycle with causes and correlations wired like the services do."""

    def __init__(self) -> None:
        self.events: list[Any] = []

    def add(self, cls: type, *, cause: Any = None, producer: str = "x", **fields: Any) -> Any:
        n = len(self.events)
        meta = t.EventMeta(
            event_id=f"e{n}",
            occurred_at=T0 + timedelta(seconds=n),
            producer=producer,
            correlation_id=cause.meta.correlation_id if cause else f"e{n}",
            causation_id=cause.meta.event_id if cause else None,
        )
        event = dataclasses.replace(example_event(cls), meta=meta, model="credit", **fields)
        self.events.append(event)
        return event

    def rollout(self, registered: Any, *, champion: int, passes: bool) -> None:
        version = registered.version
        started = self.add(
            t.RolloutStarted, cause=registered, candidate_version=version,
            champion_version=champion,
        )  # fmt: skip
        for pct in (5.0, 25.0) if passes else (5.0,):
            shift = self.add(
                t.TrafficShifted, cause=started,
                routes=[t.Route(variant="canary", version=version, weight_pct=pct),
                        t.Route(variant="champion", version=champion, weight_pct=100 - pct)],
            )  # fmt: skip
            verdict = self.add(
                t.CanaryEvaluated, cause=shift, candidate_version=version,
                verdict="pass" if passes else "fail",
            )  # fmt: skip
        if passes:
            self.add(t.ModelPromoted, cause=verdict, version=version)
        else:
            self.add(t.ModelRolledBack, cause=verdict, version=version, restored_version=champion)


def whole_story() -> Log:
    log = Log()
    ask = log.add(t.TrainingRequested)
    one = log.add(t.ModelRegistered, cause=ask, version=1)
    log.add(t.ModelPromoted, cause=one, version=1)
    drift = log.add(t.DriftDetected, producer="monitor@host:1")
    started = log.add(t.TrainingStarted, cause=drift)
    trained = log.add(t.ModelTrained, cause=started)
    two = log.add(t.ModelRegistered, cause=trained, version=2)
    log.rollout(two, champion=1, passes=True)
    bad = log.add(t.TrainingRequested)
    three = log.add(t.ModelRegistered, cause=bad, version=3)
    log.rollout(three, champion=2, passes=False)
    return log


def test_the_whole_story_has_no_problems() -> None:
    story = Story.read("credit", whole_story().events)
    assert story.problems(first=1, retrained=2, bad=3) == []
    assert story.chapters[3].rolled_back is not None


def test_a_story_without_the_monitors_drift_says_so() -> None:
    log = whole_story()
    events = [e for e in log.events if not isinstance(e, t.DriftDetected)]
    problems = Story.read("credit", events).problems(first=1, retrained=2, bad=3)
    assert problems == ["the monitor published no DriftDetected"]


def test_a_promoted_bad_model_is_a_problem() -> None:
    log = whole_story()
    rolled_back = next(e for e in log.events if isinstance(e, t.ModelRolledBack))
    log.events.remove(rolled_back)
    log.add(t.ModelPromoted, version=3)
    problems = Story.read("credit", log.events).problems(first=1, retrained=2, bad=3)
    assert problems == ["v3 was not rolled back"]


def test_a_retrained_version_outside_the_drifts_loop_is_named() -> None:
    log = whole_story()
    events = [
        dataclasses.replace(e, meta=dataclasses.replace(e.meta, correlation_id="other"))
        if isinstance(e, t.ModelRegistered) and e.version == 2
        else e
        for e in log.events
    ]
    problems = Story.read("credit", events).problems(first=1, retrained=2, bad=3)
    assert problems == ["v2 was not registered in the drift's loop"]


def test_other_models_events_are_ignored() -> None:
    events = [dataclasses.replace(e, model="other") for e in whole_story().events]
    assert Story.read("credit", events).events == []

"""`modelbus status` folds the log into what each model serves."""

from __future__ import annotations

import dataclasses
from typing import Any

from modelbus.cli.status import fold_serving
from modelbus.events import example_event, new_meta
from modelbus.events import types as t


def _event(cls: type, **fields: Any) -> Any:
    return dataclasses.replace(example_event(cls), meta=new_meta("test"), model="credit", **fields)


def test_champion_candidate_routes_and_verdict_follow_the_log() -> None:
    routes = [t.Route(variant="champion", version=1, weight_pct=75.0),
              t.Route(variant="canary", version=2, weight_pct=25.0)]  # fmt: skip
    events = [
        _event(t.ModelRegistered, version=1),
        _event(t.ModelPromoted, version=1),
        _event(t.ModelRegistered, version=2),
        _event(t.RolloutStarted, candidate_version=2),
        _event(t.TrafficShifted, routes=routes),
        _event(t.CanaryEvaluated, candidate_version=2, step_pct=25.0, verdict="wait"),
    ]
    state = fold_serving(events)["credit"]
    assert (state.champion, state.candidate, state.registered) == (1, 2, [1, 2])
    assert state.routes == routes
    assert state.last_verdict == "v2 at 25%: wait"
    rolled = fold_serving([*events, _event(t.ModelRolledBack, version=2, restored_version=1)])
    assert (rolled["credit"].champion, rolled["credit"].candidate) == (1, None)

"""The audit checks every traffic decision: routes add up, promotions are earned, causes traced."""

from __future__ import annotations

import dataclasses
from typing import Any

from modelbus.audit import audit
from modelbus.events import example_event, new_meta
from modelbus.events import types as t


def _event(cls: type, cause: Any = None, **fields: Any) -> Any:
    return dataclasses.replace(
        example_event(cls), meta=new_meta("test", cause=cause), model="credit", **fields
    )


def _shift(cause: Any, *weights: tuple[int, float]) -> t.TrafficShifted:
    routes = [t.Route(variant="champion" if i == 0 else "canary", version=v, weight_pct=w)
              for i, (v, w) in enumerate(weights)]  # fmt: skip
    return _event(t.TrafficShifted, cause, routes=routes)  # type: ignore[no-any-return]


def test_a_first_promotion_a_passed_canary_and_an_operators_ask_are_all_earned() -> None:
    drift = _event(t.DriftDetected)
    first = _event(t.ModelPromoted, version=1)
    verdict = _event(t.CanaryEvaluated, drift, candidate_version=2, verdict="pass")
    second = _event(t.ModelPromoted, verdict, version=2)
    ask = _event(t.PromotionRequested, version=1)
    third = _event(t.ModelPromoted, ask, version=1)
    report = audit([drift, first, verdict, second, ask, third])
    assert report.problems == []
    assert report.causes[second.meta.event_id] is drift
    assert report.causes[third.meta.event_id] is ask


def test_a_promotion_without_a_passed_canary_or_an_ask_is_named() -> None:
    first = _event(t.ModelPromoted, version=1)
    failed = _event(t.CanaryEvaluated, candidate_version=2, verdict="fail")
    sneaky = _event(t.ModelPromoted, version=2)
    (problem,) = audit([first, failed, sneaky]).problems
    assert problem == (
        f"ModelPromoted {sneaky.meta.event_id}: credit v2 was promoted without a passed canary "
        "or an operator's PromotionRequested"
    )


def test_routes_that_do_not_add_up_are_named() -> None:
    ok = _shift(None, (1, 95.0), (2, 5.0))
    short = _shift(None, (1, 90.0), (2, 5.0))
    (problem,) = audit([ok, short]).problems
    assert problem.startswith(
        f"TrafficShifted {short.meta.event_id} for credit: routes add up to 95%"
    )

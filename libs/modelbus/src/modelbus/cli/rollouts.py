"""Operator requests checked against the lifecycle log, and a model's rollout as the log tells it.

``modelbus promote`` and ``modelbus rollback`` refuse, before publishing, what the deployer
would ignore (an unknown model or version, nothing to roll back to), so an operator learns it
at once instead of waiting for a decision that never comes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from modelbus.events import types as t


@dataclass
class RolloutView:
    """A rollout under way: candidate, champion, policy steps and the latest verdict."""

    rollout_id: str
    candidate: int
    champion: int | None
    steps_pct: list[float]
    started_at: Any
    share_pct: float = 0.0
    evaluations: list[t.CanaryEvaluated] = field(default_factory=list)


@dataclass
class ModelView:
    """One model in the lifecycle log."""

    model: str
    registered: list[int] = field(default_factory=list)
    champion: int | None = None
    previous_champions: list[int] = field(default_factory=list)
    routes: list[t.Route] = field(default_factory=list)
    rollout: RolloutView | None = None
    last_outcome: str = ""


def fold_models(events: list[Any]) -> dict[str, ModelView]:
    """Each model's versions, champion, routes and rollout under way."""
    models: dict[str, ModelView] = {}
    for event in events:
        model = getattr(event, "model", None)
        if not isinstance(model, str):
            continue
        view = models.setdefault(model, ModelView(model))
        rollout = view.rollout
        if isinstance(event, t.ModelRegistered):
            view.registered.append(event.version)
        elif isinstance(event, t.RolloutStarted):
            view.rollout = RolloutView(
                event.meta.event_id, event.candidate_version, event.champion_version,
                list(event.policy.steps_pct if event.policy else event.steps_pct),
                event.meta.occurred_at,
            )  # fmt: skip
        elif isinstance(event, t.TrafficShifted):
            view.routes = list(event.routes)
            if rollout is not None:
                rollout.share_pct = sum(
                    r.weight_pct for r in event.routes if r.version == rollout.candidate
                )
        elif isinstance(event, t.CanaryEvaluated) and rollout is not None:
            if event.candidate_version == rollout.candidate:
                rollout.evaluations.append(event)
        elif isinstance(event, t.ModelPromoted):
            if view.champion is not None and view.champion != event.version:
                view.previous_champions.append(view.champion)
            view.champion, view.rollout = event.version, None
            view.last_outcome = f"v{event.version} promoted: {event.reason}"
        elif isinstance(event, t.ModelRolledBack):
            if rollout is not None and rollout.candidate == event.version:
                view.rollout = None
            elif view.champion == event.version:
                view.champion = event.restored_version
                if event.restored_version in view.previous_champions:
                    view.previous_champions.remove(event.restored_version)
            view.last_outcome = (
                f"v{event.version} rolled back to v{event.restored_version}: {event.reason}"
            )
    return models


def promotion_refusal(models: dict[str, ModelView], model: str, version: int) -> str | None:
    """Why the deployer would ignore promoting ``version`` of ``model``; None if it would act."""
    view = models.get(model)
    if view is None or not view.registered:
        return f"model {model!r} has no registered version in the lifecycle log"
    if version not in view.registered:
        known = ", ".join(f"v{v}" for v in view.registered)
        return f"{model} v{version} was never registered (registered: {known})"
    if view.champion == version:
        return f"{model} v{version} is already the champion"
    return None


def rollback_refusal(
    models: dict[str, ModelView], model: str, to_version: int | None
) -> str | None:
    """Why the deployer would ignore this rollback; None if it would act."""
    view = models.get(model)
    if view is None or not view.registered:
        return f"model {model!r} has no registered version in the lifecycle log"
    rollout = view.rollout
    if rollout is not None and to_version in (None, rollout.champion):
        return None
    if to_version is not None and to_version not in view.registered:
        return f"{model} v{to_version} was never registered"
    if view.champion is None:
        return f"{model} has no champion to roll back from"
    target = to_version or (view.previous_champions[-1] if view.previous_champions else None)
    if target is None:
        return f"{model} v{view.champion} is its first champion: nothing to roll back to"
    if target == view.champion and rollout is None:
        return f"{model} v{target} is already the champion"
    return None


def describe_decision(event: Any) -> str:
    """One line for a decision the deployer took on an operator's request."""
    if isinstance(event, t.ModelPromoted):
        return f"{event.model} v{event.version} promoted (was v{event.previous_version})"
    if isinstance(event, t.ModelRolledBack):
        return f"{event.model} v{event.version} rolled back to v{event.restored_version}"
    if isinstance(event, t.TrafficShifted):
        routes = ", ".join(f"v{r.version} {r.variant} {r.weight_pct:g}%" for r in event.routes)
        return f"{event.model} traffic: {routes}"
    return type(event).__name__

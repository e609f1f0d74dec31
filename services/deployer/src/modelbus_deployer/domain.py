"""Rollouts as a fold over modelbus.lifecycle and modelbus.health; pure, no I/O, no clock.

``Deployer.apply`` folds any event (the deployer's own decisions included, read back from the
log); ``Deployer.decide`` answers a trigger with the decisions to publish, and applies them at
once so the next trigger sees them. Decision ids are uuid5 of their cause, so a deployer that
restarts mid-rollout and decides again writes the very ids the log may already hold — and
``apply`` of an id already folded changes nothing. Timers run on event time passed in (``now``).

With ``policy.shadow`` a rollout opens with a shadow step: the champion keeps 100% and the
candidate is routed as variant ``shadow`` at weight 0 (inference scores a mirror of every
champion-routed request with it, results to the shadow topic only). That step is judged like
any other, on the ``shadow`` windows against the champion's over the same windows, and its
``CanaryEvaluated`` says ``step_index`` -1 and ``step_pct`` 0; a pass moves to the first
weighted step, a failure rolls back before any caller was answered by the candidate. Shadow
windows are evidence in that step only, canary windows in the weighted steps only.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from modelbus.events import types as t
from modelbus_deployer.judge import Arm, Judgement, judge

CANARY, CHAMPION, SHADOW = "canary", "champion", "shadow"
_IDS = uuid.UUID("5d0f6b4e-4a0c-4b8e-9a57-1f5c2f6f7e21")


def decision_id(cause_id: str, what: str) -> str:
    """A decision's event id: the same cause and decision always give the same id.

    >>> decision_id("e1", "promote") == decision_id("e1", "promote") != decision_id("e1", "x")
    True
    """
    return str(uuid.uuid5(_IDS, f"{cause_id}/{what}"))


@dataclass
class Rollout:
    """A candidate walking the policy's steps against the champion."""

    rollout_id: str
    candidate: int
    champion: int | None
    policy: t.RolloutPolicy
    correlation_id: str
    step: int = 0
    step_started_at: datetime | None = None
    step_cause: str = ""
    windows: dict[tuple[int, str], dict[datetime, t.ModelHealth]] = field(default_factory=dict)
    looks: int = 0
    consecutive_failures: int = 0
    total_failures: int = 0
    last_health_at: datetime | None = None
    paused: bool = False
    shadowing: bool = False
    """In the shadow step: the candidate scores mirrored traffic and answers no caller."""

    @property
    def step_pct(self) -> float:
        """The candidate's share of callers in this step (0 while shadowing)."""
        return 0.0 if self.shadowing else self.policy.steps_pct[self.step]

    @property
    def candidate_variant(self) -> str:
        """The variant whose windows are the candidate's evidence in this step."""
        return SHADOW if self.shadowing else CANARY

    def counterpart(self, variant: str) -> tuple[int, str]:
        """The arm a window of ``variant`` is compared with."""
        if variant == CHAMPION:
            return (self.candidate, self.candidate_variant)
        return (self.champion or -1, CHAMPION)

    def arm(self, version: int, variant: str) -> Arm:
        """The step's windows of one arm, over the windows both arms have."""
        mine = self.windows.get((version, variant), {})
        other = self.windows.get(self.counterpart(variant), {})
        arm = Arm()
        for start in sorted(set(mine) & set(other)):
            arm = arm.add(mine[start])
        return arm


@dataclass
class ModelState:
    """One model: its versions, champion, and the rollout under way."""

    model: str
    registered: set[int] = field(default_factory=set)
    champion: int | None = None
    previous_champions: list[int] = field(default_factory=list)
    rollout: Rollout | None = None


@dataclass
class Deployer:
    """Every model's state, and the ids of the decisions already folded."""

    producer: str
    policy: t.RolloutPolicy
    models: dict[str, ModelState] = field(default_factory=dict)
    folded: set[str] = field(default_factory=set)
    _now: datetime | None = None
    """The time of the decision under way (decisions happen at ``now``; ids ignore it)."""

    def state(self, model: str) -> ModelState:
        """A model's state (created empty on first sight)."""
        return self.models.setdefault(model, ModelState(model))

    # -- folding ------------------------------------------------------------------------------

    def apply(self, event: Any) -> None:
        """Fold one event from the log (or one just decided); the same id twice is a no-op."""
        if isinstance(event, t.ModelHealth):
            self._observe_health(event)
            return
        event_id = event.meta.event_id
        if event_id in self.folded:
            return
        self.folded.add(event_id)
        state = self.state(event.model)
        if isinstance(event, t.ModelRegistered):
            state.registered.add(event.version)
        elif isinstance(event, t.RolloutStarted):
            policy = event.policy or self.policy
            state.rollout = Rollout(
                rollout_id=event_id, candidate=event.candidate_version,
                champion=event.champion_version, policy=policy,
                correlation_id=event.meta.correlation_id,
                step_started_at=event.meta.occurred_at, step_cause=event_id,
                shadowing=policy.shadow and event.champion_version is not None,
            )  # fmt: skip
        elif isinstance(event, t.TrafficShifted):
            self._shifted(state, event)
        elif isinstance(event, t.CanaryEvaluated):
            self._evaluated(state, event)
        elif isinstance(event, t.ModelPromoted):
            if state.champion is not None and state.champion != event.version:
                state.previous_champions.append(state.champion)
            state.champion = event.version
            state.rollout = None
        elif isinstance(event, t.ModelRolledBack):
            if state.rollout is not None and state.rollout.candidate == event.version:
                state.rollout = None
            elif state.champion == event.version:
                state.champion = event.restored_version
                if event.restored_version in state.previous_champions:
                    state.previous_champions.remove(event.restored_version)

    def _shifted(self, state: ModelState, event: t.TrafficShifted) -> None:
        rollout = state.rollout
        if rollout is None:
            return
        share = sum(r.weight_pct for r in event.routes if r.version == rollout.candidate)
        if (
            share in rollout.policy.steps_pct
            and rollout.policy.steps_pct.index(share) >= rollout.step
        ):
            step = rollout.policy.steps_pct.index(share)
            if (
                step != rollout.step
                or rollout.step_cause == rollout.rollout_id
                or rollout.shadowing
            ):
                rollout.shadowing = False
                rollout.step, rollout.step_started_at = step, event.meta.occurred_at
                rollout.step_cause, rollout.windows, rollout.looks = event.meta.event_id, {}, 0

    def _evaluated(self, state: ModelState, event: t.CanaryEvaluated) -> None:
        rollout = state.rollout
        if rollout is None or event.rollout_id != rollout.rollout_id:
            return
        rollout.looks += 1
        if event.verdict == "fail":
            rollout.consecutive_failures += 1
            rollout.total_failures += 1
        elif event.verdict == "pass":
            rollout.consecutive_failures = 0
        rollout.paused = any(r.startswith("paused") for r in event.reasons)

    def _observe_health(self, window: t.ModelHealth) -> None:
        rollout = self.state(window.model).rollout
        if rollout is None or rollout.step_started_at is None:
            return
        if window.window_start < rollout.step_started_at:
            return  # traffic of an earlier step: not this step's evidence
        if (window.version, window.variant) not in {
            (rollout.candidate, rollout.candidate_variant),
            (rollout.champion, CHAMPION),
        }:
            return  # pinned answers never, shadow answers only in the shadow step
        rollout.windows.setdefault((window.version, window.variant), {})[window.window_start] = (
            window
        )
        rollout.last_health_at = max(rollout.last_health_at or window.window_end, window.window_end)
        rollout.paused = False

    # -- deciding -----------------------------------------------------------------------------

    def decide(self, event: Any, *, now: datetime) -> list[Any]:
        """Fold ``event`` and return the decisions it calls for, folded too.

        An event already folded decides nothing again, and a decision whose id is already on
        the log is not returned: a restarted deployer never repeats one.
        """
        if not isinstance(event, t.ModelHealth) and event.meta.event_id in self.folded:
            return []
        self.apply(event)
        self._now = now
        try:
            made = self._decisions(event, now)
        finally:
            self._now = None
        decisions = [d for d in made if d.meta.event_id not in self.folded]
        for decision in decisions:
            self.apply(decision)
        return decisions

    def tick(self, model: str, *, now: datetime) -> list[Any]:
        """Timers: a rollout whose health stopped arriving pauses and says so, once."""
        rollout = self.state(model).rollout
        if rollout is None or rollout.paused or rollout.step_started_at is None:
            return []
        last = rollout.last_health_at or rollout.step_started_at
        silent_s = (now - last).total_seconds()
        if silent_s < rollout.policy.health_timeout_s:
            return []
        cause = f"{rollout.step_cause}/silent-since-{int(last.timestamp())}"
        reason = (
            f"paused: no ModelHealth for {silent_s:.0f}s (timeout "
            f"{rollout.policy.health_timeout_s:g}s); is the monitor running? nothing is "
            "promoted without evidence"
        )
        evaluated = self._evaluation(model, rollout, Judgement("wait"), cause, now, [reason])
        if evaluated.meta.event_id in self.folded:
            return []
        self.apply(evaluated)
        return [evaluated]

    def _decisions(self, event: Any, now: datetime) -> list[Any]:
        if isinstance(event, t.ModelHealth):
            return self._judge(event, now)
        if isinstance(event, t.ModelRegistered):
            return self._registered(event, now)
        if isinstance(event, t.ModelLoadFailed):
            rollout = self.state(event.model).rollout
            if rollout is not None and rollout.candidate == event.version:
                return self._roll_back(event, rollout, f"candidate failed to load: {event.reason}")
            return []
        if isinstance(event, t.PromotionRequested):
            return self._promote_by_request(event)
        if isinstance(event, t.RollbackRequested):
            return self._roll_back_by_request(event)
        return []

    def _meta(self, cause: Any, what: str, correlation_id: str | None = None) -> t.EventMeta:
        return t.EventMeta(
            event_id=decision_id(cause.meta.event_id, what),
            occurred_at=self._now or cause.meta.occurred_at,
            producer=self.producer,
            correlation_id=correlation_id or cause.meta.correlation_id,
            causation_id=cause.meta.event_id,
        )

    def _shift(self, cause: Any, model: str, routes: list[t.Route], reason: str, what: str,
               correlation_id: str | None = None) -> t.TrafficShifted:  # fmt: skip
        return t.TrafficShifted(
            meta=self._meta(cause, what, correlation_id), model=model, routes=routes,
            reason=reason,
        )  # fmt: skip

    def _registered(self, event: t.ModelRegistered, now: datetime) -> list[Any]:
        state = self.state(event.model)
        if state.champion is not None and event.version <= state.champion:
            return []
        if state.champion is None and state.rollout is None:
            only = [t.Route(variant=CHAMPION, version=event.version, weight_pct=100.0)]
            shift = self._shift(event, event.model, only, "first version", "first-shift")
            promoted = t.ModelPromoted(
                meta=self._meta(shift, "first-promote"), model=event.model,
                version=event.version, previous_version=None,
                reason="first version of the model: nothing to compare it with",
            )  # fmt: skip
            return [shift, promoted]
        decisions: list[Any] = []
        if state.rollout is not None:
            decisions += self._roll_back(
                event, state.rollout, f"superseded by v{event.version}", what="superseded"
            )
        started = t.RolloutStarted(
            meta=self._meta(event, "rollout"), model=event.model,
            candidate_version=event.version, champion_version=state.champion,
            steps_pct=list(self.policy.steps_pct), policy=self.policy,
            reason=f"v{event.version} registered; champion v{state.champion}",
        )  # fmt: skip
        first_pct = self.policy.steps_pct[0]
        if self.policy.shadow and state.champion is not None:
            shadow = [
                t.Route(variant=CHAMPION, version=state.champion, weight_pct=100.0),
                t.Route(variant=SHADOW, version=event.version, weight_pct=0.0),
            ]
            reason = f"shadow v{event.version}: scores a mirror of all traffic, answers no caller"
            shift = self._shift(started, event.model, shadow, reason, "shadow")
            return [*decisions, started, shift]
        shift = self._shift(
            started, event.model, _routes(event.version, state.champion, first_pct),
            f"canary v{event.version} at {first_pct:g}%", "step-0",
        )  # fmt: skip
        return [*decisions, started, shift]

    def _judge(self, window: t.ModelHealth, now: datetime) -> list[Any]:
        state = self.state(window.model)
        rollout = state.rollout
        if rollout is None or rollout.step_started_at is None:
            return []
        key = (window.version, window.variant)
        mine = rollout.windows.get(key, {})
        if window.window_start not in mine:
            return []  # not evidence of this step
        if window.window_start not in rollout.windows.get(rollout.counterpart(window.variant), {}):
            return []  # judged once both arms have the window
        cause = f"{rollout.step_cause}/window-{int(window.window_start.timestamp() * 1000)}"
        if decision_id(cause, "evaluated") in self.folded:
            return []  # this window was judged before a restart
        candidate = rollout.arm(rollout.candidate, rollout.candidate_variant)
        champion = rollout.arm(rollout.champion or -1, CHAMPION)
        baked_s = (window.window_end - rollout.step_started_at).total_seconds()
        judgement = judge(
            rollout.policy, candidate, champion, look=rollout.looks + 1, baked_s=baked_s
        )
        evaluated = self._evaluation(window.model, rollout, judgement, cause, now, [])
        evaluated = replace(evaluated, health_through=window.window_end)
        decisions: list[Any] = [evaluated]
        failed_now = int(judgement.verdict == "fail")
        if failed_now and (
            rollout.consecutive_failures + failed_now >= rollout.policy.max_consecutive_failures
            or rollout.total_failures + failed_now >= rollout.policy.max_total_failures
        ):
            failed = "; ".join(f"{g.name}: {g.detail}" for g in judgement.failed)
            return decisions + self._roll_back(evaluated, rollout, f"canary failed {failed}")
        if judgement.verdict == "pass":
            return decisions + self._advance(evaluated, state, rollout)
        return decisions

    def _evaluation(
        self, model: str, rollout: Rollout, judgement: Judgement, cause: str, now: datetime,
        extra: list[str],
    ) -> t.CanaryEvaluated:  # fmt: skip
        candidate = rollout.arm(rollout.candidate, rollout.candidate_variant)
        champion = rollout.arm(rollout.champion or -1, CHAMPION)
        metrics = {
            "candidate_results": float(candidate.results),
            "champion_results": float(champion.results),
            "candidate_labelled": float(candidate.labelled),
            "champion_labelled": float(champion.labelled),
            "windows": float(candidate.windows),
        }
        return t.CanaryEvaluated(
            meta=t.EventMeta(
                event_id=decision_id(cause, "evaluated"), occurred_at=now, producer=self.producer,
                correlation_id=rollout.correlation_id, causation_id=rollout.step_cause,
            ),
            model=model, candidate_version=rollout.candidate, champion_version=rollout.champion,
            step_pct=rollout.step_pct, verdict=judgement.verdict,
            reasons=extra + judgement.reasons(), metrics=metrics, rollout_id=rollout.rollout_id,
            step_index=-1 if rollout.shadowing else rollout.step, guardrails=judgement.guardrails,
        )  # fmt: skip

    def _advance(
        self, evaluated: t.CanaryEvaluated, state: ModelState, rollout: Rollout
    ) -> list[Any]:
        following = 0 if rollout.shadowing else rollout.step + 1
        passed = "the shadow step" if rollout.shadowing else f"{rollout.step_pct:g}%"
        pct = rollout.policy.steps_pct[following]
        if pct < 100.0:
            return [
                self._shift(
                    evaluated, state.model, _routes(rollout.candidate, rollout.champion, pct),
                    f"canary v{rollout.candidate} passed {passed}; now {pct:g}%",
                    f"step-{following}",
                )
            ]  # fmt: skip
        only = [t.Route(variant=CHAMPION, version=rollout.candidate, weight_pct=100.0)]
        shift = self._shift(
            evaluated, state.model, only, f"v{rollout.candidate} promoted", "promote-shift"
        )
        promoted = t.ModelPromoted(
            meta=self._meta(shift, "promote"), model=state.model, version=rollout.candidate,
            previous_version=rollout.champion,
            reason=f"canary passed every step {rollout.policy.steps_pct[:-1]}",
        )  # fmt: skip
        return [shift, promoted]

    def _roll_back(
        self, cause: Any, rollout: Rollout, reason: str, what: str = "rollback"
    ) -> list[Any]:
        model = cause.model
        back = rollout.champion
        routes = [t.Route(variant=CHAMPION, version=back, weight_pct=100.0)] if back else []
        decisions: list[Any] = []
        if routes:
            decisions.append(
                self._shift(cause, model, routes, f"rollback of v{rollout.candidate}",
                            f"{what}-shift", rollout.correlation_id)
            )  # fmt: skip
        decisions.append(
            t.ModelRolledBack(
                meta=self._meta(cause, what, rollout.correlation_id), model=model,
                version=rollout.candidate, restored_version=back, reason=reason,
            )
        )  # fmt: skip
        return decisions

    def _promote_by_request(self, event: t.PromotionRequested) -> list[Any]:
        state = self.state(event.model)
        if event.version not in state.registered or event.version == state.champion:
            return []
        decisions: list[Any] = []
        if state.rollout is not None and state.rollout.candidate != event.version:
            decisions += self._roll_back(
                event, state.rollout, f"operator {event.requested_by} promoted v{event.version}",
                what="withdrawn",
            )  # fmt: skip
        only = [t.Route(variant=CHAMPION, version=event.version, weight_pct=100.0)]
        shift = self._shift(event, event.model, only, f"promoted by {event.requested_by}", "shift")
        promoted = t.ModelPromoted(
            meta=self._meta(event, "promote"), model=event.model, version=event.version,
            previous_version=state.champion,
            reason=f"operator {event.requested_by}: {event.reason}",
        )  # fmt: skip
        return [*decisions, shift, promoted]

    def _roll_back_by_request(self, event: t.RollbackRequested) -> list[Any]:
        state = self.state(event.model)
        operator = f"operator {event.requested_by}: {event.reason}"
        if state.rollout is not None and event.to_version in (None, state.rollout.champion):
            return self._roll_back(event, state.rollout, operator)
        target = event.to_version or (
            state.previous_champions[-1] if state.previous_champions else None
        )
        if target is None or target not in state.registered or state.champion is None:
            return []
        decisions: list[Any] = []
        if state.rollout is not None:
            decisions += self._roll_back(event, state.rollout, operator, what="withdrawn")
        only = [t.Route(variant=CHAMPION, version=target, weight_pct=100.0)]
        shift = self._shift(event, event.model, only, f"rollback by {event.requested_by}", "shift")
        rolled = t.ModelRolledBack(
            meta=self._meta(event, "rollback"), model=event.model, version=state.champion,
            restored_version=target, reason=operator,
        )  # fmt: skip
        return [*decisions, shift, rolled]


def _routes(candidate: int, champion: int | None, pct: float) -> list[t.Route]:
    routes = [t.Route(variant=CANARY, version=candidate, weight_pct=pct)]
    if champion is not None:
        routes.append(t.Route(variant=CHAMPION, version=champion, weight_pct=100.0 - pct))
    return routes

"""Did the demo's story happen? A pure reading of one model's lifecycle events, no I/O.

The story: a first version promoted; the monitor's DriftDetected starting a retraining whose
version wins its canary and is promoted, all under the drift's correlation id; then a bad version
rolled back by the deployer with traffic back on the champion. The demo and its e2e test read it
back from the log, so the demo exits 0 only when the services really did all of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from modelbus.events import types as t


@dataclass
class Chapter:
    """One version's way through the loop, as the log tells it."""

    version: int
    registered: t.ModelRegistered
    rollout: t.RolloutStarted | None = None
    shifts: list[t.TrafficShifted] = field(default_factory=list)
    verdicts: list[t.CanaryEvaluated] = field(default_factory=list)
    promoted: t.ModelPromoted | None = None
    rolled_back: t.ModelRolledBack | None = None


@dataclass
class Story:
    """A model's lifecycle, grouped for the demo's checks."""

    model: str
    events: list[Any] = field(default_factory=list)
    chapters: dict[int, Chapter] = field(default_factory=dict)
    drifts: list[t.DriftDetected] = field(default_factory=list)

    @classmethod
    def read(cls, model: str, events: list[Any]) -> Story:
        """Group ``events`` (in log order) of ``model`` by the version they concern."""
        story = cls(model)
        for event in events:
            if getattr(event, "model", None) != model:
                continue
            story.events.append(event)
            story._add(event)
        return story

    def _add(self, event: Any) -> None:
        if isinstance(event, t.ModelRegistered):
            self.chapters[event.version] = Chapter(event.version, event)
        elif isinstance(event, t.DriftDetected):
            self.drifts.append(event)
        elif isinstance(event, t.RolloutStarted):
            if chapter := self.chapters.get(event.candidate_version):
                chapter.rollout = event
        elif isinstance(event, t.TrafficShifted):
            for version in {route.version for route in event.routes if route.weight_pct > 0}:
                if chapter := self.chapters.get(version):
                    chapter.shifts.append(event)
        elif isinstance(event, t.CanaryEvaluated):
            if chapter := self.chapters.get(event.candidate_version):
                chapter.verdicts.append(event)
        elif isinstance(event, t.ModelPromoted):
            if chapter := self.chapters.get(event.version):
                chapter.promoted = event
        elif isinstance(event, t.ModelRolledBack) and (chapter := self.chapters.get(event.version)):
            chapter.rolled_back = event

    def correlated(self, correlation_id: str) -> list[Any]:
        """Every event of one loop, in log order."""
        return [e for e in self.events if e.meta.correlation_id == correlation_id]

    def monitor_drift(self) -> t.DriftDetected | None:
        """The first DriftDetected the monitor published."""
        return next((d for d in self.drifts if d.meta.producer.startswith("monitor")), None)

    def problems(self, *, first: int, retrained: int, bad: int) -> list[str]:
        """What the log lacks for the story with these versions; empty when it all happened."""
        found: list[str] = []
        one = self.chapters.get(first)
        if one is None or one.promoted is None:
            found.append(f"v{first} was not registered and promoted")
        drift = self.monitor_drift()
        two = self.chapters.get(retrained)
        if drift is None:
            found.append("the monitor published no DriftDetected")
        elif two is None or two.registered.meta.correlation_id != drift.meta.correlation_id:
            found.append(f"v{retrained} was not registered in the drift's loop")
        else:
            kinds = {type(e).__name__ for e in self.correlated(drift.meta.correlation_id)}
            for needed in ("TrainingStarted", "ModelTrained", "ModelRegistered"):
                if needed not in kinds:
                    found.append(f"no {needed} carries the drift's correlation id")
        if two is not None:
            found += _walked_canary(two)
            if two.promoted is None:
                found.append(f"v{retrained} was not promoted")
            elif drift and two.promoted.meta.correlation_id != drift.meta.correlation_id:
                found.append(f"v{retrained}'s ModelPromoted is not in the drift's loop")
        three = self.chapters.get(bad)
        if three is None:
            found.append(f"v{bad} (the bad model) was not registered")
        elif three.rolled_back is None:
            found.append(f"v{bad} was not rolled back")
        elif three.promoted is not None:
            found.append(f"v{bad} was promoted; it should have failed its canary")
        elif not any(v.verdict == "fail" for v in three.verdicts):
            found.append(f"v{bad} was rolled back without a failed CanaryEvaluated")
        return found


def _walked_canary(chapter: Chapter) -> list[str]:
    if chapter.rollout is None:
        return [f"v{chapter.version} had no RolloutStarted"]
    weights = [
        route.weight_pct
        for shift in chapter.shifts
        for route in shift.routes
        if route.version == chapter.version and route.variant == "canary"
    ]
    if len(weights) < 2 or weights != sorted(weights):
        return [f"v{chapter.version}'s traffic did not rise step by step: {weights}"]
    if not any(v.verdict == "pass" for v in chapter.verdicts):
        return [f"v{chapter.version} passed no canary judgement"]
    return []

"""The trainer's view of the lifecycle log and its admission rules; no I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from modelbus.events import types as t

Trigger = t.TrainingRequested | t.DriftDetected


@dataclass(frozen=True, slots=True)
class Admission:
    """Whether a trigger starts a job, and why not."""

    accepted: bool
    reason: str = ""


@dataclass
class TrainerState:
    """A fold over ``modelbus.lifecycle``: champions, answered triggers, running jobs, drift.

    Rebuilt on start by replaying the log, so de-duplication and cool-downs survive restarts.
    """

    drift_cooldown_s: float
    max_trigger_age_s: float
    models_pattern: str = r"[^.]+"
    champion: dict[str, int] = field(default_factory=dict)
    latest_registered: dict[str, int] = field(default_factory=dict)
    answered: set[str] = field(default_factory=set)
    running: dict[str, t.TrainingStarted] = field(default_factory=dict)
    last_drift_job_at: dict[str, datetime] = field(default_factory=dict)

    def parent_version(self, model: str) -> int | None:
        """The champion a new model would replace (else the latest registered version)."""
        return self.champion.get(model, self.latest_registered.get(model))

    def observe(self, event: Any) -> None:
        """Fold one lifecycle event (idempotent: the trainer also reads its own events)."""
        if isinstance(event, t.ModelPromoted):
            self.champion[event.model] = event.version
        elif isinstance(event, t.ModelRolledBack):
            if event.restored_version is None:
                self.champion.pop(event.model, None)
            else:
                self.champion[event.model] = event.restored_version
        elif isinstance(event, t.ModelRegistered):
            previous = self.latest_registered.get(event.model, 0)
            self.latest_registered[event.model] = max(previous, event.version)
        elif isinstance(event, t.TrainingStarted):
            # A trigger admitted here already noted its own time; a replayed one has only this.
            admitted_here = event.meta.causation_id in self.answered
            if event.meta.causation_id:
                self.answered.add(event.meta.causation_id)
            self.running[event.job_id] = event
            if event.trigger == "DriftDetected" and not admitted_here:
                self._note_drift_job(event.model, event.meta.occurred_at)
        elif isinstance(event, t.ModelTrained | t.TrainingFailed):
            self.running.pop(event.job_id, None)

    def admit(self, event: Trigger, *, now: datetime) -> Admission:
        """Accept a trigger, or say why it starts no job; accepting records it."""
        if not self.trains(event.model):
            return Admission(False, f"{event.model} is not in models_pattern {self.models_pattern}")
        if event.meta.event_id in self.answered:
            return Admission(False, f"duplicate: {event.meta.event_id} was already answered")
        age_s = (now - event.meta.occurred_at).total_seconds()
        if age_s > self.max_trigger_age_s:
            return Admission(
                False,
                f"stale: sent {age_s:.0f}s ago; max_trigger_age_s={self.max_trigger_age_s:.0f}",
            )
        if isinstance(event, t.DriftDetected):
            busy = [job for job in self.running.values() if job.model == event.model]
            if busy:
                return Admission(
                    False, f"job {busy[0].job_id} for {event.model} is running; same episode"
                )
            last = self.last_drift_job_at.get(event.model)
            if last is not None:
                since_s = (event.meta.occurred_at - last).total_seconds()
                if since_s < self.drift_cooldown_s:
                    return Admission(
                        False,
                        f"cool-down: a drift job for {event.model} started {since_s:.0f}s "
                        f"before this event; drift_cooldown_s={self.drift_cooldown_s:.0f}",
                    )
            self._note_drift_job(event.model, event.meta.occurred_at)
        self.answered.add(event.meta.event_id)
        return Admission(True)

    def interrupted_jobs(self) -> list[t.TrainingStarted]:
        """Jobs the log shows started but never finished (the trainer stopped mid-job)."""
        return [job for job in self.running.values() if self.trains(job.model)]

    def trains(self, model: str) -> bool:
        """Whether ``model`` is this trainer's to train (``models_pattern``, full match).

        >>> state = TrainerState(drift_cooldown_s=0, max_trigger_age_s=1, models_pattern="credit")
        >>> state.trains("credit"), state.trains("credit2")
        (True, False)
        """
        return re.fullmatch(self.models_pattern, model) is not None

    def _note_drift_job(self, model: str, at: datetime) -> None:
        last = self.last_drift_job_at.get(model)
        self.last_drift_job_at[model] = at if last is None else max(last, at)

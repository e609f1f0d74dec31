"""Registry rules with no I/O: version numbers, parents, and how events move aliases."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from modelbus.events import types as t

CHAMPION = "champion"
CANARY = "canary"
ALIASES = (CHAMPION, CANARY)
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


@dataclass(frozen=True, slots=True)
class AliasMove:
    """Set ``alias`` to ``version``, or clear it when ``version`` is None."""

    alias: str
    version: int | None


def model_name_problem(model: str) -> str | None:
    """Why ``model`` cannot name a registered model (it becomes a path and an MLflow name)."""
    if MODEL_NAME.match(model):
        return None
    return (
        f"model name {model!r} is not allowed: use letters, digits, '_', '.', '-' "
        "(at most 128, starting with a letter or digit)"
    )


def next_version(latest: int | None) -> int:
    """Versions are 1, 2, 3... per model, with no gaps."""
    return 1 if latest is None else latest + 1


def parent_of(
    claimed: int | None, existing: set[int], champion: int | None, latest: int | None
) -> int | None:
    """The version a new one replaces: the trainer's claim if it exists, else champion, else latest.

    The trainer names the champion it saw; before any rollout there is none, and the newest
    version is then what the new one was trained to improve on.
    """
    if claimed is not None and claimed in existing:
        return claimed
    return champion if champion is not None else latest


def place_version(
    existing: set[int], champion: int | None, claimed_parent: int | None, announced: int | None
) -> tuple[int, int | None]:
    """(version, parent) of a new version, above every version held or ``announced`` on the log.

    A registry whose database lags the log never issues a number the log already holds:

    >>> place_version({1, 2}, 2, None, None)
    (3, 2)
    >>> place_version({1}, None, None, 4)
    (5, 1)
    >>> place_version(set(), None, None, None)
    (1, None)
    """
    latest = max(existing) if existing else None
    highest = max((v for v in (latest, announced) if v is not None), default=None)
    return next_version(highest), parent_of(claimed_parent, existing, champion, latest)


class AnnouncedVersions:
    """What the lifecycle log announced: each ModelRegistered by the ModelTrained it answered.

    ``catch_up`` brings it up to the log's end (a no-op here: a view filled by ``record``);
    the Kafka-backed subclass reads the log.

    >>> view = AnnouncedVersions()
    >>> view.latest("credit") is None
    True
    """

    def __init__(self) -> None:
        self._answers: dict[str, t.ModelRegistered] = {}
        self._latest: dict[str, int] = {}
        self._trained: dict[str, t.ModelTrained] = {}

    def catch_up(self) -> None:
        """Read what the log holds beyond what this view has seen."""

    def record(self, event: Any) -> None:
        """Take one lifecycle event into account (ModelTrained and ModelRegistered count)."""
        if isinstance(event, t.ModelTrained):
            self._trained.setdefault(event.meta.event_id, event)
        if not isinstance(event, t.ModelRegistered):
            return
        self._latest[event.model] = max(event.version, self._latest.get(event.model, 0))
        if event.meta.causation_id is not None:
            self._answers.setdefault(event.meta.causation_id, event)

    def answer_for(self, trained_event_id: str) -> t.ModelRegistered | None:
        """The ModelRegistered that answered a ModelTrained, if the log holds one."""
        return self._answers.get(trained_event_id)

    def latest(self, model: str) -> int | None:
        """The highest version of ``model`` announced on the log."""
        return self._latest.get(model)

    def models(self) -> list[str]:
        """Every model with an announced version."""
        return sorted(self._latest)

    def not_held(
        self, model: str, held: set[int]
    ) -> list[tuple[t.ModelTrained, t.ModelRegistered]]:
        """Announced versions of ``model`` missing from ``held``, with their cause, oldest first."""
        return sorted(
            (
                (self._trained[trained_id], answer)
                for trained_id, answer in self._answers.items()
                if answer.model == model
                and answer.version not in held
                and trained_id in self._trained
            ),
            key=lambda pair: pair[1].version,
        )


def alias_moves(event: Any, current: Mapping[str, int | None]) -> list[AliasMove]:
    """How ``event`` moves the aliases of its model, given their ``current`` versions."""
    wanted: dict[str, int | None] = {}
    if isinstance(event, t.TrafficShifted):
        # The routes are the whole table: no live canary route means no canary.
        canaries = [r for r in event.routes if r.variant == CANARY and r.weight_pct > 0]
        wanted[CANARY] = canaries[0].version if canaries else None
    elif isinstance(event, t.ModelPromoted):
        wanted = {CHAMPION: event.version, CANARY: None}
    elif isinstance(event, t.ModelRolledBack):
        wanted[CANARY] = None
        if event.restored_version is not None:
            wanted[CHAMPION] = event.restored_version
        elif current.get(CHAMPION) == event.version:
            wanted[CHAMPION] = None
    return [
        AliasMove(alias, version)
        for alias, version in wanted.items()
        if current.get(alias) != version
    ]


class NotFound(LookupError):
    """Something asked for does not exist; the message says what does."""


def unknown_model(model: str, known: list[str]) -> NotFound:
    """The error for a model the registry has never heard of."""
    listed = ", ".join(known) if known else "none yet"
    return NotFound(f"no model {model!r}; models: {listed}")


def unknown_version(model: str, version: int, versions: list[int]) -> NotFound:
    """The error for a version a model does not have."""
    listed = ", ".join(map(str, versions)) if versions else "none yet"
    return NotFound(f"model {model!r} has no version {version}; versions: {listed}")


@dataclass(frozen=True, slots=True)
class RequestRollback:
    """An operator asks to serve ``to_version`` (the previous champion when None)."""

    model: str
    to_version: int | None
    requested_by: str
    reason: str


@dataclass(frozen=True, slots=True)
class RequestPromotion:
    """An operator asks to make ``version`` champion now."""

    model: str
    version: int
    requested_by: str
    reason: str


@dataclass(frozen=True, slots=True)
class RequestTraining:
    """An operator asks for a new training job."""

    model: str
    requested_by: str
    reason: str
    seed: int | None = None
    max_rows: int | None = None

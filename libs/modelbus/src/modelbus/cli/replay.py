"""Re-scoring past requests with a registered version: prediction audits and replays.

Read-only on production topics: requests, their committed results and their labels are read
with read_committed consumers of their own and joined by request id; the version is loaded
from the registered package (every file's sha256 checked), nothing is published.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from modelbus.bus import LIFECYCLE_TOPIC, data_topic
from modelbus.bus.reading import decoded, read_topic
from modelbus.events import Codec
from modelbus.events import types as t


@dataclass
class Answered:
    """A request, the result committed for it (if any) and its label (if one arrived)."""

    request: t.PredictionRequest
    result: t.PredictionResult | None = None
    label: int | None = None


def _decoded(bootstrap: str, codec: Codec, topic: str) -> Iterable[Any]:
    """The topic's events; undecodable ones were dead-lettered then, so none was answered."""
    return decoded(read_topic(bootstrap, topic), codec, on_undecodable=lambda *_: None)


def read_answered(
    bootstrap: str,
    codec: Codec,
    model: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    request_ids: set[str] | None = None,
) -> dict[str, Answered]:
    """Requests of ``model`` sent in [since, until) (or with these ids), joined by request id."""
    answered: dict[str, Answered] = {}
    for event in _decoded(bootstrap, codec, data_topic(model, "requests")):
        if not isinstance(event, t.PredictionRequest):
            continue
        if request_ids is not None and event.request_id not in request_ids:
            continue
        if (since and event.sent_at < since) or (until and event.sent_at >= until):
            continue
        answered.setdefault(event.request_id, Answered(event))
    for event in _decoded(bootstrap, codec, data_topic(model, "predictions")):
        if isinstance(event, t.PredictionResult) and event.request_id in answered:
            answered[event.request_id].result = event
    for event in _decoded(bootstrap, codec, data_topic(model, "feedback")):
        if isinstance(event, t.Feedback) and event.request_id in answered:
            answered[event.request_id].label = event.label
    return answered


def registrations(bootstrap: str, codec: Codec, model: str) -> dict[int, t.ModelRegistered]:
    """Every registered version of ``model``, from the lifecycle log."""
    found = {}
    for event in _decoded(bootstrap, codec, LIFECYCLE_TOPIC):
        if isinstance(event, t.ModelRegistered) and event.model == model:
            found[event.version] = event
    return found


def load_version(registration: t.ModelRegistered) -> Any:
    """The registered package, verified against the sha256 the log recorded."""
    from modelbus.packaging import load_package, resolve_package

    return load_package(
        resolve_package(registration.artifact_uri),
        expected_sha256=registration.artifact_sha256,
        threads=1,
    )


def rescore(loaded: Any, rows: list[dict[str, Any]]) -> np.ndarray:
    """Scores as inference computes them: in a batch (a lone row is scored beside a copy of
    itself, because a one-row forward pass may round differently than a batched one)."""
    if len(rows) == 1:
        return np.asarray(loaded.predict_rows(rows * 2))[:1]
    return np.asarray(loaded.predict_rows(rows))


@dataclass(frozen=True)
class Reproduction:
    """How recomputed scores compare with the committed ones."""

    compared: int
    identical: int
    max_abs_diff: float
    differing: tuple[str, ...]

    @property
    def exact(self) -> bool:
        """Every score bit-for-bit equal."""
        return self.compared == self.identical


def compare_scores(
    request_ids: list[str], committed: list[list[float]], recomputed: np.ndarray
) -> Reproduction:
    """Committed vs recomputed scores, per request (the wire carries float64 of float32).

    >>> compare_scores(["a", "b"], [[0.25, 0.75], [0.5, 0.5]], np.array([[0.25, 0.75], [0.5, 0.4]]))
    Reproduction(compared=2, identical=1, max_abs_diff=0.09999999999999998, differing=('b',))
    """
    committed_array = np.asarray(committed, dtype=np.float64)
    recomputed_array = np.asarray(recomputed, dtype=np.float64)
    same = np.all(committed_array == recomputed_array, axis=1)
    differing = tuple(rid for rid, ok in zip(request_ids, same, strict=True) if not ok)
    diff = float(np.max(np.abs(committed_array - recomputed_array))) if len(request_ids) else 0.0
    return Reproduction(len(request_ids), int(same.sum()), diff, differing)


@dataclass(frozen=True)
class ReplaySummary:
    """What a version would have said, against what was answered then."""

    version: int
    requests: int
    answered_then: int
    agreement: float | None
    labelled: int
    accuracy_then: float | None
    accuracy_replayed: float | None


def summarise(version: int, answered: list[Answered], labels_now: np.ndarray) -> ReplaySummary:
    """Agreement with the labels answered then, and accuracy of both where labels exist."""
    pairs = list(zip(answered, (int(label) for label in labels_now), strict=True))
    then = [(a.result.label, now) for a, now in pairs if a.result is not None]
    labelled = [(a, now) for a, now in pairs if a.label is not None]
    agreement = _share(then_label == now for then_label, now in then)
    accuracy_then = _share(a.result is not None and a.result.label == a.label for a, _ in labelled)
    accuracy_now = _share(now == a.label for a, now in labelled)
    return ReplaySummary(
        version, len(answered), len(then), agreement, len(labelled), accuracy_then, accuracy_now
    )


def _share(hits: Iterable[bool]) -> float | None:
    values = list(hits)
    return sum(values) / len(values) if values else None

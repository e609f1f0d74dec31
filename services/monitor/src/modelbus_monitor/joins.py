"""Request ⋈ result ⋈ label by request id, in any arrival order, within a join window.

Entries wait at most ``join_window_s`` of event time for their partners; then they expire and
are counted by what they lacked (a result never labelled is the common, harmless case).
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from modelbus_monitor.evidence import Where


@dataclass(frozen=True, slots=True)
class ResultFacts:
    """What the monitor keeps of a PredictionResult."""

    version: int
    variant: str
    scores: tuple[float, ...]
    predicted: int
    at_s: float
    latency_ms: float

    @property
    def score(self) -> float:
        """The positive-class (last) score."""
        return self.scores[-1]


@dataclass(frozen=True, slots=True)
class Served:
    """A request joined with its result: input to the covariate and prediction detectors."""

    features: Mapping[str, Any]
    where: Where
    result: ResultFacts


@dataclass(frozen=True, slots=True)
class Labelled:
    """A result joined with its label, once for health (``where`` None if its request is not
    seen yet) and once more for the error detector when the request comes later."""

    result: ResultFacts
    label: int
    observed_at_s: float
    where: Where | None
    for_health: bool = True


@dataclass(slots=True)
class _Entry:
    first_seen_s: float
    features: Mapping[str, Any] | None = None
    where: Where | None = None
    result: ResultFacts | None = None
    label: tuple[int, float] | None = None
    served: bool = False
    scored: bool = False


class JoinBuffer:
    """Pending joins by request id."""

    def __init__(self, join_window_s: float) -> None:
        self.join_window_s = join_window_s
        self.expired: Counter[str] = Counter()
        self.duplicates = 0
        self._entries: dict[str, _Entry] = {}
        self._order: deque[tuple[float, str]] = deque()

    def __len__(self) -> int:
        return len(self._entries)

    def _entry(self, request_id: str, at_s: float) -> _Entry:
        entry = self._entries.get(request_id)
        if entry is None:
            entry = self._entries[request_id] = _Entry(at_s)
            self._order.append((at_s, request_id))
        return entry

    def has_result(self, request_id: str) -> bool:
        """Whether a result of ``request_id`` waits here for its partners."""
        entry = self._entries.get(request_id)
        return entry is not None and entry.result is not None

    def request(
        self, request_id: str, features: Mapping[str, Any], where: Where
    ) -> list[Served | Labelled]:
        """A request arrived."""
        entry = self._entry(request_id, where.at_s)
        if entry.where is not None:
            self.duplicates += 1
            return []
        entry.features, entry.where = features, where
        return self._joined(request_id, entry)

    def result(self, request_id: str, result: ResultFacts) -> list[Served | Labelled]:
        """A result arrived."""
        entry = self._entry(request_id, result.at_s)
        if entry.result is not None:
            self.duplicates += 1
            return []
        entry.result = result
        return self._joined(request_id, entry)

    def label(self, request_id: str, label: int, observed_at_s: float) -> list[Served | Labelled]:
        """A label arrived."""
        entry = self._entry(request_id, observed_at_s)
        if entry.label is not None:
            self.duplicates += 1
            return []
        entry.label = (label, observed_at_s)
        return self._joined(request_id, entry)

    def _joined(self, request_id: str, entry: _Entry) -> list[Served | Labelled]:
        out: list[Served | Labelled] = []
        if entry.result is None:
            return out
        if entry.where is not None and entry.features is not None and not entry.served:
            entry.served = True
            out.append(Served(entry.features, entry.where, entry.result))
            entry.features = None
        if entry.label is not None:
            out.append(Labelled(entry.result, *entry.label, entry.where, not entry.scored))
            entry.scored = True
            if entry.where is not None:
                del self._entries[request_id]
        return out

    def expire(self, watermark_s: float) -> int:
        """Drop entries older than the join window; returns how many expired."""
        horizon = watermark_s - self.join_window_s
        dropped = 0
        while self._order and self._order[0][0] < horizon:
            first_seen_s, request_id = self._order.popleft()
            entry = self._entries.get(request_id)
            if entry is None or entry.first_seen_s != first_seen_s:
                continue
            del self._entries[request_id]
            dropped += 1
            if entry.result is None:
                self.expired["no_result"] += 1
            elif entry.where is None:
                self.expired["no_request"] += 1
            else:
                self.expired["no_label"] += 1
        return dropped

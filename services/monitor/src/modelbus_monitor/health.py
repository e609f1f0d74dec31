"""ModelHealth windows: exact counts per model version and variant over fixed event-time windows.

A result counts in the window of its own time (the result's ``occurred_at``); a label counts
in the window of its ``observed_at``, under the version and variant of the result it joined
(the ModelHealth schema's "accuracy on requests whose Feedback arrived in the window"), so a
deployer comparing canary and champion over the same windows sees labels however late they
come. A window is published once the watermark passes its end plus the lateness, and never
again: events for it that come later are counted as late, windows at or before the last one
published (read back from ``modelbus.health`` on start) are dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

SCORE_BINS = 10
SCORE_QUANTILES = (0.1, 0.5, 0.9)
_EPS = 1e-15

WindowKey = tuple[int, str, float]


@dataclass
class _Window:
    latencies_ms: list[float] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    labelled: int = 0
    correct: int = 0
    log_loss_sum: float = 0.0
    dead_letters: int = 0
    drift_alarms: int = 0
    out_of_profile: int = 0


@dataclass(frozen=True)
class HealthSummary:
    """One closed window of one version and variant (becomes a ModelHealth)."""

    version: int
    variant: str
    start_s: float
    end_s: float
    requests: int
    dead_letters: int
    latency_p50_ms: float
    latency_p99_ms: float
    latency_max_ms: float
    mean_score: float
    score_histogram: tuple[int, ...]
    score_quantiles: tuple[float, ...]
    labelled: int
    correct: int
    accuracy: float | None
    log_loss: float | None
    drift_alarms: int
    out_of_profile: int


def summarise(
    version: int, variant: str, start_s: float, end_s: float, w: _Window
) -> HealthSummary:
    """Exact statistics of a window (numpy's default linear-interpolated quantiles)."""
    latencies = np.asarray(w.latencies_ms, dtype=np.float64)
    scores = np.asarray(w.scores, dtype=np.float64)
    p50, p99 = (
        (float(q) for q in np.quantile(latencies, (0.5, 0.99))) if latencies.size else (0.0, 0.0)
    )
    histogram, _ = np.histogram(scores, bins=SCORE_BINS, range=(0.0, 1.0))
    return HealthSummary(
        version=version,
        variant=variant,
        start_s=start_s,
        end_s=end_s,
        requests=int(latencies.size),
        dead_letters=w.dead_letters,
        latency_p50_ms=p50,
        latency_p99_ms=p99,
        latency_max_ms=float(latencies.max()) if latencies.size else 0.0,
        mean_score=float(scores.mean()) if scores.size else 0.0,
        score_histogram=tuple(int(c) for c in histogram),
        score_quantiles=tuple(float(q) for q in np.quantile(scores, SCORE_QUANTILES))
        if scores.size
        else (),
        labelled=w.labelled,
        correct=w.correct,
        accuracy=w.correct / w.labelled if w.labelled else None,
        log_loss=w.log_loss_sum / w.labelled if w.labelled else None,
        drift_alarms=w.drift_alarms,
        out_of_profile=w.out_of_profile,
    )


class HealthWindows:
    """Open windows of one model, closed by an event-time watermark."""

    def __init__(self, window_s: float, lateness_s: float) -> None:
        self.window_s = window_s
        self.lateness_s = lateness_s
        self.late = 0
        self._open: dict[WindowKey, _Window] = {}
        self._published: dict[tuple[int, str], float] = {}
        self._variant_of: dict[int, str] = {}

    def published(self, version: int, variant: str, end_s: float) -> None:
        """A window already on ``modelbus.health`` (read on start): never publish it again."""
        key = (version, variant)
        self._published[key] = max(self._published.get(key, -math.inf), end_s)

    def _window(self, version: int, variant: str, at_s: float) -> _Window | None:
        start_s = math.floor(at_s / self.window_s) * self.window_s
        if start_s + self.window_s <= self._published.get((version, variant), -math.inf):
            self.late += 1
            return None
        window = self._open.get((version, variant, start_s))
        if window is None:
            window = self._open[(version, variant, start_s)] = _Window()
        return window

    def result(
        self, version: int, variant: str, at_s: float, latency_ms: float, score: float
    ) -> None:
        """A result at event time ``at_s``."""
        self._variant_of[version] = variant
        window = self._window(version, variant, at_s)
        if window is not None:
            window.latencies_ms.append(latency_ms)
            window.scores.append(score)

    def label(
        self,
        version: int,
        variant: str,
        at_s: float,
        scores: tuple[float, ...],
        label: int,
        predicted: int,
    ) -> None:
        """A label that joined a result of ``version``/``variant``, observed at ``at_s``."""
        window = self._window(version, variant, at_s)
        if window is not None:
            window.labelled += 1
            window.correct += int(predicted == label)
            p_true = scores[label] if 0 <= label < len(scores) else 0.0
            window.log_loss_sum += -math.log(min(max(p_true, _EPS), 1.0))

    def dead_letter(self, version: int, at_s: float) -> None:
        """A dead letter attributed to ``version`` (counted under its latest variant)."""
        window = self._window(version, self._variant_of.get(version, "champion"), at_s)
        if window is not None:
            window.dead_letters += 1

    def alarm(self, version: int, variant: str, at_s: float, fired: int) -> None:
        """``fired`` detectors fired at ``at_s``."""
        window = self._window(version, variant, at_s)
        if window is not None:
            window.drift_alarms += fired

    def out_of_profile(self, version: int, variant: str, at_s: float) -> None:
        """A request with a value outside the training range."""
        window = self._window(version, variant, at_s)
        if window is not None:
            window.out_of_profile += 1

    def close(self, watermark_s: float) -> list[HealthSummary]:
        """Windows whose end plus lateness is at or before ``watermark_s``, oldest first."""
        due = sorted(k for k in self._open if k[2] + self.window_s + self.lateness_s <= watermark_s)
        closed = []
        for version, variant, start_s in due:
            window = self._open.pop((version, variant, start_s))
            end_s = start_s + self.window_s
            self.published(version, variant, end_s)
            closed.append(summarise(version, variant, start_s, end_s, window))
        return closed

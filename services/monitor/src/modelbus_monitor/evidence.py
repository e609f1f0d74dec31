"""Evidence behind an alarm: change point, effect size and p-value, and where the drift began.

Pure functions of the recent values of a stream. A suspicion raised by a detector becomes a
finding only when every gate passes: enough values on both sides of the change point, an
effect at least the floor, and a (Bonferroni-adjusted) p-value under ``alpha``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np
from scipy.stats import ks_2samp, norm

from modelbus_monitor.hygiene import bonferroni, change_point
from modelbus_monitor.reference import NumericReference, binned_counts, compare_counts

MIN_SEGMENT = 30


class Where(NamedTuple):
    """Event time (s) and position of the request behind an observation."""

    at_s: float
    partition: int
    offset: int


@dataclass(frozen=True)
class Gates:
    """Thresholds of the detectors and their evidence (see ``config.Settings``)."""

    adwin_delta: float = 0.002
    adwin_clock: int = 4
    error_adwin_delta: float = 0.002
    min_samples: int = 300
    alpha: float = 0.001
    min_effect_sigma: float = 0.2
    min_score_shift: float = 0.05
    min_error_increase: float = 0.05
    min_category_psi: float = 0.05
    category_chunk: int = 1000
    history: int = 4000


@dataclass(frozen=True)
class Evidence:
    """What one detector saw (becomes a DriftEvidence)."""

    feature: str
    detector: str
    statistic: float
    threshold: float | None
    start_s: float
    end_s: float
    sample_size: int
    p_value: float | None
    effect_size: float | None
    kind: str

    def at(self, start_s: float, end_s: float) -> Evidence:
        """The same evidence over the window [start_s, end_s]."""
        return replace(self, start_s=start_s, end_s=end_s)


@dataclass(frozen=True)
class Finding:
    """A gated alarm of one stream: candidate for a DriftDetected."""

    kind: str
    evidence: tuple[Evidence, ...]
    onset_at_s: float
    onset_offsets: tuple[tuple[int, int], ...]
    at_s: float
    index: int


def _split(values: np.ndarray) -> tuple[int, np.ndarray, np.ndarray] | None:
    onset = change_point(values, MIN_SEGMENT)
    if onset < MIN_SEGMENT or len(values) - onset < MIN_SEGMENT:
        return None
    return onset, values[:onset], values[onset:]


def numeric_evidence(
    values: np.ndarray, reference: NumericReference, tests: int, gates: Gates
) -> tuple[Evidence, int] | None:
    """Mean shift (sigma) across the change point, and the new regime vs the profile."""
    split = _split(values)
    if split is None:
        return None
    onset, before, after = split
    shift = float(after.mean() - before.mean()) / reference.std
    if abs(shift) < gates.min_effect_sigma:
        return None
    p_value, psi = compare_counts(binned_counts(after, reference), reference.counts)
    adjusted = bonferroni(p_value, tests)
    if adjusted >= gates.alpha:
        return None
    evidence = Evidence(
        reference.name, "ADWIN", shift, gates.min_effect_sigma, 0.0, 0.0, len(after),
        adjusted, psi, "covariate",
    )  # fmt: skip
    return evidence, onset


def score_evidence(values: np.ndarray, gates: Gates) -> tuple[Evidence, int] | None:
    """Mean score shift across the change point, with a two-sample KS test of both sides."""
    split = _split(values)
    if split is None:
        return None
    onset, before, after = split
    shift = float(after.mean() - before.mean())
    if abs(shift) < gates.min_score_shift:
        return None
    test = ks_2samp(before, after)
    if float(test.pvalue) >= gates.alpha:
        return None
    evidence = Evidence(
        "__prediction__", "ADWIN", shift, gates.min_score_shift, 0.0, 0.0, len(after),
        float(test.pvalue), float(test.statistic), "prediction",
    )  # fmt: skip
    return evidence, onset


def error_evidence(errors: np.ndarray, gates: Gates) -> tuple[Evidence, int] | None:
    """Error-rate increase across the change point, with a one-sided two-proportion z-test.

    >>> errors = np.array([0.0, 0.0, 0.0, 1.0] * 100 + [1.0, 0.0] * 100)
    >>> evidence, onset = error_evidence(errors, Gates())
    >>> onset, round(evidence.statistic, 3), evidence.p_value < 1e-6
    (399, 0.254, True)
    """
    split = _split(errors)
    if split is None:
        return None
    onset, before, after = split
    rate_before, rate_after = float(before.mean()), float(after.mean())
    increase = rate_after - rate_before
    if increase < gates.min_error_increase:
        return None
    pooled = float(errors.mean())
    spread = math.sqrt(pooled * (1 - pooled) * (1 / len(before) + 1 / len(after)))
    p_value = float(norm.sf(increase / spread)) if spread > 0 else 0.0
    if p_value >= gates.alpha:
        return None
    evidence = Evidence(
        "__error__", "ADWIN", increase, gates.min_error_increase, 0.0, 0.0, len(after),
        p_value, increase, "concept",
    )  # fmt: skip
    return evidence, onset


def onset_offsets(positions: list[Where], onset: int) -> tuple[tuple[int, int], ...]:
    """Per partition, the first request offset sent at or after the onset's event time.

    By time, not by arrival order, so a stream read one partition after another still points
    each partition at its own first new-regime request. A partition with nothing since the
    onset starts right after its last request.

    >>> seen = [Where(1.0, 0, 10), Where(2.0, 1, 7), Where(3.0, 0, 11), Where(4.0, 0, 12)]
    >>> onset_offsets(seen, 2)
    ((0, 11), (1, 8))
    >>> onset_offsets([Where(5.0, 1, 3), Where(1.0, 0, 10), Where(6.0, 0, 11)], 0)
    ((0, 11), (1, 3))
    """
    onset_at_s = positions[onset].at_s
    first: dict[int, int] = {}
    resume: dict[int, int] = {}
    for where in positions:
        if where.at_s >= onset_at_s:
            if where.offset < first.get(where.partition, where.offset + 1):
                first[where.partition] = where.offset
        else:
            resume[where.partition] = max(resume.get(where.partition, 0), where.offset + 1)
    return tuple(sorted({**resume, **first}.items()))

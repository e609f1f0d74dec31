"""The training reference of a model version (its ``profile.json``) and the tests against it.

Pure: a profile is parsed from a dict, windows are numpy arrays. Numeric features are tested
in the profile's own histogram bins (a two-sample chi-square on counts, so point masses such
as Agrawal's ``commission == 0`` need no special case; values outside the training range
fall in the end bins), categorical ones on their category counts; the effect size is PSI.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import chi2_contingency

_PSI_FLOOR = 1e-4


@dataclass(frozen=True)
class NumericReference:
    """A numeric feature as training saw it."""

    name: str
    mean: float
    std: float
    low: float
    high: float
    edges: np.ndarray
    counts: np.ndarray


@dataclass(frozen=True)
class CategoricalReference:
    """A categorical feature's training counts by category (as strings), then 0 unseen."""

    name: str
    categories: tuple[str, ...]
    counts: np.ndarray


@dataclass(frozen=True)
class Reference:
    """Every feature of one model version's training profile."""

    numeric: tuple[NumericReference, ...]
    categorical: tuple[CategoricalReference, ...]

    @property
    def tests(self) -> int:
        """Features tested together (the Bonferroni family)."""
        return max(len(self.numeric) + len(self.categorical), 1)


def reference_from_profile(profile: Mapping[str, Any]) -> Reference:
    """Parse ``profile.json``; features without a distribution (all missing) are skipped."""
    numeric, categorical = [], []
    for name, summary in sorted(profile.get("features", {}).items()):
        if summary.get("kind") == "numeric" and "histogram" in summary:
            histogram = summary["histogram"]
            numeric.append(
                NumericReference(
                    name=name,
                    mean=float(summary["mean"]),
                    std=float(summary["std"]) or 1.0,
                    low=float(histogram["edges"][0]),
                    high=float(histogram["edges"][-1]),
                    edges=np.asarray(histogram["edges"], dtype=np.float64),
                    counts=np.asarray(histogram["counts"], dtype=np.float64),
                )
            )
        elif summary.get("kind") == "categorical" and summary.get("frequencies"):
            total = summary["count"] - summary.get("missing", 0)
            frequencies = summary["frequencies"]
            categorical.append(
                CategoricalReference(
                    name=name,
                    categories=tuple(frequencies),
                    counts=np.asarray([*(frequencies[c] * total for c in frequencies), 0.0]),
                )
            )
    return Reference(numeric=tuple(numeric), categorical=tuple(categorical))


def binned_counts(values: np.ndarray, reference: NumericReference) -> np.ndarray:
    """Counts of ``values`` in the reference's bins, out-of-range values in the end bins."""
    clipped = np.clip(values, reference.low, reference.high)
    counts, _ = np.histogram(clipped, bins=reference.edges)
    return counts.astype(np.float64)


def compare_counts(window: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """(p-value of a two-sample chi-square, PSI of window vs reference).

    >>> p, psi = compare_counts(np.array([50.0, 50.0]), np.array([500.0, 500.0]))
    >>> round(p, 3), round(psi, 3)
    (1.0, 0.0)
    >>> p, psi = compare_counts(np.array([90.0, 10.0]), np.array([500.0, 500.0]))
    >>> p < 1e-10, round(psi, 3)
    (True, 0.879)
    """
    keep = (window + reference) > 0
    window, reference = window[keep], reference[keep]
    if window.sum() == 0 or len(window) < 2:
        return 1.0, 0.0
    statistic = chi2_contingency(np.vstack([window, reference]), correction=False)
    share_window = np.maximum(window / window.sum(), _PSI_FLOOR)
    share_reference = np.maximum(reference / reference.sum(), _PSI_FLOOR)
    psi = float(np.sum((share_window - share_reference) * np.log(share_window / share_reference)))
    return float(statistic.pvalue), psi


def category_counts(values: Mapping[str, int], reference: CategoricalReference) -> np.ndarray:
    """Window counts in the reference's category order, plus one column for unseen ones."""
    known = [float(values.get(category, 0)) for category in reference.categories]
    unseen = float(sum(values.values()) - sum(known))
    return np.asarray([*known, unseen])


def out_of_range(features: Mapping[str, Any], reference: Reference) -> bool:
    """Whether any finite numeric value lies outside the training range."""
    for numeric in reference.numeric:
        value = features.get(numeric.name)
        if not isinstance(value, int | float) or not math.isfinite(value):
            continue
        if value < numeric.low or value > numeric.high:
            return True
    return False

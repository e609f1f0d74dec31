"""``profile.json``: the reference distribution of each feature, for drift checks."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from modelbus.packaging.preprocessing import feature_specs

QUANTILES = (0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0)


def _numeric_summary(values: np.ndarray, bins: int) -> dict[str, Any]:
    present = values[~np.isnan(values)]
    summary: dict[str, Any] = {
        "kind": "numeric",
        "count": int(values.size),
        "missing": int(values.size - present.size),
    }
    if present.size:
        counts, edges = np.histogram(present, bins=bins)
        summary |= {
            "mean": float(present.mean()),
            "std": float(present.std()),
            "quantiles": {
                f"{q:g}": float(v)
                for q, v in zip(QUANTILES, np.quantile(present, QUANTILES), strict=True)
            },
            "histogram": {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]},
        }
    return summary


def build_profile(
    rows: Sequence[Mapping[str, Any]],
    contract: Mapping[str, Any],
    *,
    labels: Sequence[int] | None = None,
    probabilities: np.ndarray | None = None,
    bins: int = 20,
) -> dict[str, Any]:
    """Per feature: count, missing, mean/std, quantiles and a histogram (numeric) or value
    frequencies (categorical); plus the label rate and the positive-class score distribution.
    """
    features: dict[str, Any] = {}
    for spec in feature_specs(contract):
        column = [row.get(spec.name) for row in rows]
        if spec.kind == "numeric":
            features[spec.name] = _numeric_summary(np.array(column, dtype=np.float64), bins)
        else:
            counts = Counter(value for value in column if value is not None)
            total = max(sum(counts.values()), 1)
            features[spec.name] = {
                "kind": "categorical",
                "count": len(column),
                "missing": len(column) - sum(counts.values()),
                "frequencies": {
                    str(value): count / total
                    for value, count in sorted(counts.items(), key=lambda kv: str(kv[0]))
                },
            }
    profile: dict[str, Any] = {"rows": len(rows), "features": features}
    if labels is not None and len(labels):
        label_counts = Counter(int(label) for label in labels)
        profile["labels"] = {str(k): v / len(labels) for k, v in sorted(label_counts.items())}
    if probabilities is not None and len(probabilities):
        positive = np.asarray(probabilities, dtype=np.float64)
        positive = positive[:, -1] if positive.ndim == 2 else positive
        score_counts, edges = np.histogram(positive, bins=bins, range=(0.0, 1.0))
        profile["prediction"] = {
            "mean": float(positive.mean()),
            "histogram": {
                "edges": [float(e) for e in edges],
                "counts": [int(c) for c in score_counts],
            },
        }
    return profile

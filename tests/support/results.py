"""Checks over the predictions a test read back."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def results_by_request(results: Iterable[Any]) -> dict[str, int]:
    """How many PredictionResults each request id got."""
    counts: dict[str, int] = {}
    for result in results:
        counts[result.request_id] = counts.get(result.request_id, 0) + 1
    return counts

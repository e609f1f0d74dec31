"""Prometheus metrics of one worker, labelled by model and version."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Histogram

_LATENCY_BUCKETS_MS = (0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)


class Metrics:
    """Counters and histograms in their own registry (one per worker, served on /metrics)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "modelbus_inference_requests", "Requests consumed.", ["model"], registry=r
        )
        self.results = Counter(
            "modelbus_inference_results",
            "Results produced.",
            ["model", "version", "variant"],
            registry=r,
        )
        self.dead_letters = Counter(
            "modelbus_inference_dead_letters",
            "Requests dead-lettered, by reason.",
            ["model", "version", "reason"],
            registry=r,
        )
        self.model_errors = Counter(
            "modelbus_inference_model_errors",
            "Requests a model raised on or gave non-finite scores for.",
            ["model", "version"],
            registry=r,
        )
        self.transactions_aborted = Counter(
            "modelbus_inference_transactions_aborted",
            "Transactions aborted (their batch is reprocessed).",
            ["model"],
            registry=r,
        )
        self.batch_size = Histogram(
            "modelbus_inference_batch_size",
            "Requests per micro-batch.",
            ["model"],
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000),
            registry=r,
        )
        self.end_to_end_ms = Histogram(
            "modelbus_inference_end_to_end_ms",
            "From the request's sent_at to its result being produced, ms.",
            ["model", "version"],
            buckets=_LATENCY_BUCKETS_MS,
            registry=r,
        )
        self.model_ms = Histogram(
            "modelbus_inference_model_ms",
            "Forward pass of one micro-batch, ms.",
            ["model", "version"],
            buckets=_LATENCY_BUCKETS_MS,
            registry=r,
        )


def observe_many(histogram: Histogram, values: Sequence[float]) -> None:
    """Observe a batch of values at once (one lock per bucket, not one per value)."""
    upper_bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if upper_bounds is None or buckets is None or total is None:
        for value in values:
            histogram.observe(value)
        return
    # prometheus_client counts a value in the first bucket whose bound is >= it.
    positions = np.searchsorted(np.asarray(upper_bounds), np.asarray(values), side="left")
    for position, count in zip(*np.unique(positions, return_counts=True), strict=True):
        buckets[int(position)].inc(int(count))
    total.inc(float(np.sum(values)))

"""Prometheus metrics of one worker, labelled by model and version."""

from __future__ import annotations

import collections
import gc
import math
import time
from bisect import bisect_left
from collections.abc import Callable, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS_MS = (0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
_STAGE_BUCKETS_MS = (0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 50, 75, 100, 200, 500, 1000)
# The stream loop's stages, one observation per micro-batch each (see ``Metrics.stage_ms``).
STAGES = ("fetch", "score", "fill", "wait", "produce", "offsets", "commit", "delivery")


class Progress:
    """Whether the stream moves: the last commit, the last time it had nothing to do, its state.

    Healthy while streaming when a batch committed (its transaction, or its offsets after
    delivery), or the loop found no input with no batch in flight, within ``stall_after_s``;
    before streaming starts it is not judged.
    """

    def __init__(self, stall_after_s: float = 30.0, clock: Callable[[], float] = time.monotonic):
        self.stall_after_s = stall_after_s
        self.clock = clock
        self.state = "starting"
        self.reason = ""
        self.committed_at: float | None = None
        self.idle_at = clock()

    def streaming(self) -> None:
        """The stream loop started (or came back after a rebuild)."""
        if self.state != "streaming":
            self.idle_at = self.clock()
        self.state, self.reason = "streaming", ""

    def committed(self) -> None:
        """A batch's offsets committed (in its transaction, or after its delivery)."""
        self.committed_at = self.clock()

    def idle(self) -> None:
        """The loop found no input and had no batch in flight."""
        self.idle_at = self.clock()

    def rebuilding(self, reason: str) -> None:
        """The Kafka clients are being rebuilt after ``reason``."""
        self.state, self.reason = "rebuilding", reason

    def commit_age_s(self) -> float | None:
        """Seconds since the last commit; None before the first."""
        return None if self.committed_at is None else self.clock() - self.committed_at

    def report(self) -> tuple[bool, dict[str, Any]]:
        """(healthy, details) as /healthz shows them."""
        now = self.clock()
        age = self.commit_age_s()
        details: dict[str, Any] = {
            "state": self.state,
            "last_commit_age_s": None if age is None else round(age, 3),
        }
        if self.state == "starting":
            return True, details
        moved = max(self.idle_at, self.committed_at or self.idle_at)
        stalled_s = now - moved
        if stalled_s > self.stall_after_s:
            why = f"no commit and no idle poll for {stalled_s:.1f} s"
            details["reason"] = f"{why} ({self.reason})" if self.reason else why
            return False, details
        return True, details


class Metrics:
    """Counters and histograms in their own registry (one per worker, served on /metrics)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.progress = Progress()
        r = self.registry
        self.last_commit_age = Gauge(
            "modelbus_inference_last_commit_age_seconds",
            "Seconds since this worker's last commit of a batch's offsets (-1 before the first).",
            registry=r,
        )
        self.last_commit_age.set_function(self._commit_age)
        self.client_rebuilds = Counter(
            "modelbus_inference_client_rebuilds",
            "Producer and consumer rebuilt after a fatal, stuck or unrecoverable Kafka error.",
            ["model"],
            registry=r,
        )
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
        self.deliveries_failed = Counter(
            "modelbus_inference_deliveries_failed",
            "At-least-once batches with an output not delivered (the batch is read again).",
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

        self.stage_ms = Histogram(
            "modelbus_inference_stage_ms",
            "Time a micro-batch spends in each stage, ms. Stream thread: fetch (consume() until "
            "the batch is read), score (decode, model, encode), fill (reading more while the "
            "batch in flight is still written, scoring excluded), wait (for the batch in flight "
            "to be written). Writer thread: produce (begin + outputs handed to the producer); "
            "exactly-once: offsets (send_offsets_to_transaction), commit (commit_transaction); "
            "at-least-once: delivery (until every output is acknowledged).",
            ["model", "stage"],
            buckets=_STAGE_BUCKETS_MS,
            registry=r,
        )

        self.gc_pause_ms = Histogram(
            "modelbus_inference_gc_pause_ms",
            "Python garbage collections while streaming, by generation: how long each held "
            "every thread, ms.",
            ["generation"],
            buckets=_STAGE_BUCKETS_MS,
            registry=r,
        )

    def watch_gc(self) -> None:
        """Time every garbage collection of this process from now on (``gc_pause_ms``)."""
        started: list[float] = []

        def timed(phase: str, info: dict[str, int]) -> None:
            if phase == "start":
                started[:] = [time.perf_counter()]
            elif started:
                pause_ms = (time.perf_counter() - started.pop()) * 1000
                self.gc_pause_ms.labels(str(info["generation"])).observe(pause_ms)

        gc.callbacks.append(timed)

    def stage_observer(self, model: str) -> Callable[[str, float], None]:
        """``observe(stage, ms)`` for one model's ``stage_ms``, children looked up once."""
        children = {stage: self.stage_ms.labels(model, stage) for stage in STAGES}

        def observe(stage: str, elapsed_ms: float) -> None:
            children[stage].observe(elapsed_ms)

        return observe

    def _commit_age(self) -> float:
        age = self.progress.commit_age_s()
        return -1.0 if age is None else age


def observe_many(histogram: Histogram, values: Sequence[float]) -> None:
    """Observe a batch of values at once: one increment per bucket hit, not one per value.

    Counted with ``bisect`` rather than numpy: a micro-batch at low load holds a few requests,
    and numpy's fixed cost (~30 us a call) was ten times the loop's for four values; at 256
    the two are even.
    """
    upper_bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if upper_bounds is None or buckets is None or total is None:
        for value in values:
            histogram.observe(value)
        return
    # prometheus_client counts a value in the first bucket whose bound is >= it.
    hits = collections.Counter(bisect_left(upper_bounds, value) for value in values)
    for position, count in hits.items():
        buckets[position].inc(count)
    total.inc(math.fsum(values))

"""Where a request's latency goes: per request from its result, per batch from /metrics.

Per request (every result a paced run reads): the request's ``sent_at`` (stamped at send), the
result's ``timings`` (picked up by the worker, produced), the result record's CreateTime (set
when the writer thread hands it to the producer) and the moment the read_committed reader sees
it give four consecutive stages:

- ``to_worker``: sent -> picked up (producer linger, broker append, the consumer's fetch, the
  micro-batch wait ``max_wait_ms``);
- ``in_worker``: picked up -> result encoded (decode, validate, model, encode);
- ``to_writer``: encoded -> handed to the producer (the stream thread waiting for the batch in
  flight to be written before it submits this one);
- ``commit_and_read``: handed to the producer -> seen by the reader (the transaction's
  AddOffsetsToTxn, TxnOffsetCommit and EndTxn, the broker's commit markers that move the last
  stable offset, the reader's fetch).

For the floor (benchmarks/floor.py) the result is the request's own bytes: only the record's
CreateTime splits its latency, into ``to_writer`` (sent -> handed to the producer) and
``commit_and_read``.

Per batch: the worker's ``modelbus_inference_stage_ms`` histogram (fetch, score, wait,
produce, offsets, commit, delivery), and its garbage collections' pauses (``gc0``-``gc2``,
``modelbus_inference_gc_pause_ms``), read from /metrics before and after a run; "batches" is
then the number of collections.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from modelbus.events import CodecError
from modelbus.events import types as t

REQUEST_STAGES = ("to_worker", "in_worker", "to_writer", "commit_and_read")
STAGE_METRIC = "modelbus_inference_stage_ms"
GC_METRIC = "modelbus_inference_gc_pause_ms"


@dataclass(frozen=True, slots=True)
class Seen:
    """One result as the benchmark's reader saw it."""

    value: bytes
    sent_ms: int  # the request's sent_at (ms since the epoch)
    produced_ms: int  # the result record's CreateTime
    seen_ms: float  # wall clock when the reader got it
    latency_ms: float  # send -> seen, on the monotonic clock


def request_stages(seen: list[Seen], codec: Any) -> dict[str, np.ndarray]:
    """stage -> ms per request (in ``seen`` order); results that are not PredictionResults
    (the floor's echoes) get ``in_worker`` and ``to_worker`` as NaN, all of sent -> produced in
    ``to_writer``."""
    stages = {name: np.full(len(seen), np.nan) for name in REQUEST_STAGES}
    for index, item in enumerate(seen):
        stages["commit_and_read"][index] = item.seen_ms - item.produced_ms
        try:
            result = codec.decode(item.value)
        except CodecError:
            result = None
        if isinstance(result, t.PredictionResult):
            timings = result.timings
            stages["to_worker"][index] = timings.queue_ms
            stages["in_worker"][index] = timings.total_ms - timings.queue_ms
            stages["to_writer"][index] = item.produced_ms - (item.sent_ms + timings.total_ms)
        else:
            stages["to_writer"][index] = item.produced_ms - item.sent_ms
    return stages


def slowest_breakdown(seen: list[Seen], codec: Any) -> dict[str, Any]:
    """Mean ms per stage of the slowest 1% of requests next to the median request's.

    CreateTime and ``sent_at`` have millisecond resolution: each stage is +-1 ms.
    """
    if not seen:
        return {}
    latency = np.asarray([item.latency_ms for item in seen])
    stages = request_stages(seen, codec)
    slow = latency >= np.percentile(latency, 99)
    table: dict[str, Any] = {}
    for name, values in stages.items():
        if np.isnan(values).all():
            continue
        table[name] = {
            "median_of_all_ms": round(float(np.nanmedian(values)), 2),
            "mean_of_slowest_1pct_ms": round(float(np.nanmean(values[slow])), 2),
            "max_of_slowest_1pct_ms": round(float(np.nanmax(values[slow])), 2),
        }
    return {
        "slowest_1pct_requests": int(slow.sum()),
        "slowest_1pct_from_ms": round(float(latency[slow].min()), 2),
        "stages": table,
    }


def stage_counts(metrics_url: str) -> dict[str, list[tuple[float, float]]]:
    """stage -> cumulative (upper bound, count) buckets of the worker's stage histogram."""
    buckets: dict[str, list[tuple[float, float]]] = {}
    try:
        text = httpx.get(metrics_url, timeout=5).text
    except httpx.HTTPError:
        # Evidence, not the measurement: a worker whose /metrics cannot be read counts as none.
        return buckets
    for family in text_string_to_metric_families(text):
        if family.name not in (STAGE_METRIC, GC_METRIC):
            continue
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                labels = sample.labels
                stage = labels["stage"] if "stage" in labels else f"gc{labels['generation']}"
                buckets.setdefault(stage, []).append((float(labels["le"]), sample.value))
    return buckets


def stage_quantiles(
    before: dict[str, list[tuple[float, float]]], after: dict[str, list[tuple[float, float]]]
) -> dict[str, Any]:
    """Per stage: batches observed between two scrapes and the bucket bounds holding their
    p50 and p99 ("<= x ms")."""
    quantiles: dict[str, Any] = {}
    for stage, buckets in after.items():
        earlier = dict(before.get(stage, []))
        counts = [(bound, count - earlier.get(bound, 0.0)) for bound, count in buckets]
        total = counts[-1][1] if counts else 0.0
        if total <= 0:
            continue

        quantiles[stage] = {
            "batches": int(total),
            "p50_le_ms": _bound_holding(counts, 0.5 * total),
            "p99_le_ms": _bound_holding(counts, 0.99 * total),
        }
    return quantiles


def _bound_holding(counts: list[tuple[float, float]], rank: float) -> float:
    return next(bound for bound, count in counts if count >= rank)


def workers_stage_quantiles(
    urls: list[str], before: list[dict[str, list[tuple[float, float]]]]
) -> dict[str, Any]:
    """``stage_quantiles`` summed over several workers' /metrics."""
    after = [stage_counts(url) for url in urls]
    return stage_quantiles(_summed(before), _summed(after))


def _summed(
    scrapes: list[dict[str, list[tuple[float, float]]]],
) -> dict[str, list[tuple[float, float]]]:
    summed: dict[str, dict[float, float]] = {}
    for scrape in scrapes:
        for stage, buckets in scrape.items():
            into = summed.setdefault(stage, {})
            for bound, count in buckets:
                into[bound] = into.get(bound, 0.0) + count
    return {stage: sorted(counts.items()) for stage, counts in summed.items()}


def render(levels: dict[str, dict[str, Any]], findings: str) -> str:
    """inference_profile.txt: the findings, then per run (label -> a paced run's result) the
    slowest 1%'s stages next to the median request's, and the per-batch stage quantiles."""
    lines = [findings.strip(), ""]
    for label, run in levels.items():
        breakdown = run.get("breakdown") or {}
        lines.append(
            f"== {label}: {run['offered_per_s']}/s offered, p50 {run['p50_ms']} ms, "
            f"p99 {run['p99_ms']} ms, max {run['max_ms']} ms"
        )
        if breakdown:
            lines.append(
                f"   slowest 1%: {breakdown['slowest_1pct_requests']} requests from "
                f"{breakdown['slowest_1pct_from_ms']} ms"
            )
            lines.append(
                f"   {'stage':<16}{'median (all)':>14}{'mean (slowest 1%)':>20}{'max':>10}"
            )
            for stage, figures in breakdown["stages"].items():
                lines.append(
                    f"   {stage:<16}{figures['median_of_all_ms']:>14}"
                    f"{figures['mean_of_slowest_1pct_ms']:>20}{figures['max_of_slowest_1pct_ms']:>10}"
                )
        batches = run.get("stages_per_batch") or {}
        if batches:
            per_batch = ", ".join(
                f"{stage} p50<={q['p50_le_ms']} p99<={q['p99_le_ms']}"
                for stage, q in batches.items()
            )
            lines.append(f"   per batch (ms, histogram buckets): {per_batch}")
        cores = run.get("cpu_cores") or {}
        if cores:
            used = ", ".join(
                f"{name.replace('_', ' ')} {'?' if value is None else value}"
                for name, value in cores.items()
            )
            lines.append(f"   cpu (cores used, of {os.cpu_count()}): {used}")
        lines.append("")
    return "\n".join(lines)

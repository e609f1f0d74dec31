"""Events as one line a person reads: what happened, to which version, and why.

Lines are rich markup (alarms in red), with the events' own text escaped.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from rich.markup import escape

from modelbus.events import GenericRecord
from modelbus.events import types as t


def _routes(routes: list[t.Route]) -> str:
    return " + ".join(f"v{r.version} {r.variant} {r.weight_pct:g}%" for r in routes)


def _drift(e: t.DriftDetected) -> str:
    evidence = "; ".join(
        f"{x.feature} {x.detector} stat={x.statistic:.3g}"
        + (f" p={x.p_value:.2g}" if x.p_value is not None else "")
        + f" n={x.sample_size}"
        for x in e.evidence[:3]
    )
    onset = f", onset {e.onset_at:%H:%M:%S}" if e.onset_at else ""
    return f"{e.kind} drift on v{e.version} {e.variant}{onset}: {evidence}"


def _health(e: t.ModelHealth) -> str:
    accuracy = f", accuracy {e.accuracy:.1%} of {e.labelled}" if e.accuracy is not None else ""
    return (
        f"v{e.version} {e.variant} {e.window_start:%H:%M:%S}-{e.window_end:%H:%M:%S}: "
        f"{e.requests} results, {e.errors} errors, p50 {e.latency_p50_ms:.1f} ms, "
        f"p99 {e.latency_p99_ms:.1f} ms, mean score {e.mean_score:.3f}{accuracy}"
    )


def _canary(e: t.CanaryEvaluated) -> str:
    failed = [g.name for g in e.guardrails if g.verdict == "fail"]
    waiting = [g.name for g in e.guardrails if g.verdict == "wait"]
    detail = (
        f"failed {', '.join(failed)}"
        if failed
        else f"waiting on {', '.join(waiting)}"
        if waiting
        else "; ".join(e.reasons[:2])
    )
    versus = f"v{e.candidate_version} vs v{e.champion_version}"
    return f"{versus} at {e.step_pct:g}%: {e.verdict} ({detail})"


def _metrics(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:.3f}" for k, v in sorted(metrics.items()) if "rows" not in k)


_LINES: dict[type, Callable[[Any], str]] = {
    t.TrainingRequested: lambda e: f"by {e.requested_by}: {e.reason}",
    t.TrainingStarted: lambda e: f"job {e.job_id} ({e.trigger})",
    t.TrainingFailed: lambda e: f"job {e.job_id} at {e.stage}: {e.reason}",
    t.ModelTrained: lambda e: f"run {e.run_id[:8]} on {e.data.rows} rows ({_metrics(e.metrics)})",
    t.ModelRegistered: lambda e: f"v{e.version} (parent {e.parent_version})",
    t.RegistrationFailed: lambda e: f"{e.reason}",
    t.RolloutStarted: lambda e: (
        f"v{e.candidate_version} vs champion v{e.champion_version}, steps {e.steps_pct}"
    ),
    t.TrafficShifted: lambda e: f"{_routes(e.routes)} ({e.reason})",
    t.CanaryEvaluated: _canary,
    t.ModelPromoted: lambda e: f"v{e.version} replaces v{e.previous_version}: {e.reason}",
    t.ModelRolledBack: lambda e: f"v{e.version} out, v{e.restored_version} back: {e.reason}",
    t.PromotionRequested: lambda e: f"v{e.version} by {e.requested_by}: {e.reason}",
    t.RollbackRequested: lambda e: f"to v{e.to_version} by {e.requested_by}: {e.reason}",
    t.ModelLoaded: lambda e: (
        f"v{e.version} by {e.worker} ({e.environment_check}, {e.load_ms:.0f} ms)"
    ),
    t.ModelLoadFailed: lambda e: f"v{e.version} by {e.worker}: {e.reason}",
    t.DriftDetected: _drift,
    t.ModelHealth: _health,
    t.PredictionResult: lambda e: (
        f"{e.request_id} -> label {e.label} by v{e.version} "
        f"{e.variant} ({e.timings.total_ms:.1f} ms)"
    ),
    t.DeadLetter: lambda e: f"{e.error_type}: {e.reason}",
}
_ALARMS = (t.TrainingFailed, t.RegistrationFailed, t.ModelLoadFailed, t.ModelRolledBack)


def one_line(event: Any) -> str:
    """``Type  model  summary``: the line ``events tail`` and the demo print for an event."""
    if isinstance(event, GenericRecord):
        return escape(f"{event.schema_name} {json.dumps(event.fields, default=str)[:200]}")
    name = type(event).__name__
    render = _LINES.get(type(event))
    if render is None:
        fields = event.to_avro()
        fields.pop("meta", None)
        summary = ", ".join(f"{k}={v}" for k, v in fields.items() if not isinstance(v, bytes))
        return escape(f"{name}: {summary}"[:240])
    line = escape(f"{name:18} {getattr(event, 'model', '')}  {render(event)}")
    return f"[red]{line}[/red]" if isinstance(event, _ALARMS) else line

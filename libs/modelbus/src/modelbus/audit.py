"""Replaying the lifecycle log into a verified timeline (no I/O: events in, report out)."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from modelbus.bus.chain import Link, broken_links
from modelbus.events import types as t


@dataclass(slots=True)
class AuditReport:
    """What the log says happened, and every inconsistency found in it."""

    events: list[Any] = field(default_factory=list)
    redeliveries: int = 0
    chains: dict[str, list[Any]] = field(default_factory=dict)
    versions: dict[str, list[int]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    causes: dict[str, Any] = field(default_factory=dict)
    """event_id of each traffic decision -> the event its causation chain starts from."""

    @property
    def ok(self) -> bool:
        """True when the log is consistent."""
        return not self.problems


def audit(events: list[Any], *, links: list[Link] | None = None) -> AuditReport:
    """Check ids are unique, causes precede effects, versions count up from 1 per model, and
    (given the messages as ``links``) that no event was removed from or altered in the log.

    Delivery is at least once: an event written again unchanged (a redelivered answer) is
    counted, not a problem; the same id with other content is.
    """
    report = AuditReport(events=events)
    report.problems += broken_links(links or [])
    seen: dict[str, Any] = {}
    chains: dict[str, list[Any]] = defaultdict(list)
    delivered = []  # each event once: a redelivery repeats no decision
    for event in events:
        meta = event.meta
        if meta.event_id in seen:
            if seen[meta.event_id] == event:
                report.redeliveries += 1
                continue
            report.problems.append(
                f"event_id {meta.event_id} reused by a different {type(event).__name__}"
            )
        if meta.causation_id is not None and meta.causation_id not in seen:
            report.problems.append(
                f"{type(event).__name__} {meta.event_id} names cause {meta.causation_id}, "
                "which is not earlier in the log"
            )
        seen[meta.event_id] = event
        delivered.append(event)
        chains[meta.correlation_id].append(event)
        if isinstance(event, t.ModelRegistered):
            report.versions.setdefault(event.model, []).append(event.version)
    for model, versions in report.versions.items():
        if versions != list(range(1, len(versions) + 1)):
            report.problems.append(f"{model}: versions registered out of order {versions}")
        duplicates = [v for v, n in Counter(versions).items() if n > 1]
        if duplicates:
            report.problems.append(f"{model}: version(s) {duplicates} registered more than once")
    report.chains = dict(chains)
    report.problems += _decision_problems(delivered)
    report.causes = {
        event.meta.event_id: root_cause(event, seen)
        for event in seen.values()
        if isinstance(event, _DECISIONS)
    }
    return report


_DECISIONS = (t.TrafficShifted, t.ModelPromoted, t.ModelRolledBack)


def root_cause(event: Any, by_id: dict[str, Any]) -> Any:
    """Walk causation ids back to the first event of the chain (a drift, an operator's ask).

    >>> a = t.EventMeta(event_id="a", occurred_at=None, producer="monitor", correlation_id="a")
    >>> b = t.EventMeta(event_id="b", occurred_at=None, producer="trainer", correlation_id="a",
    ...                 causation_id="a")
    >>> class E:
    ...     def __init__(self, meta): self.meta = meta
    >>> drift, trained = E(a), E(b)
    >>> root_cause(trained, {"a": drift, "b": trained}) is drift
    True
    """
    hops = 0
    while event.meta.causation_id in by_id and hops < 10_000:
        event, hops = by_id[event.meta.causation_id], hops + 1
    return event


def _decision_problems(events: list[Any]) -> list[str]:
    """Routes that do not add up; promotions with neither a passed canary nor an operator."""
    problems = []
    passed: set[tuple[str, int]] = set()
    asked: set[tuple[str, int]] = set()
    champions: dict[str, int] = {}
    for event in events:
        if isinstance(event, t.TrafficShifted):
            total = sum(route.weight_pct for route in event.routes)
            if abs(total - 100.0) > 1e-6 or any(r.weight_pct < 0 for r in event.routes):
                weights = [(r.variant, r.version, r.weight_pct) for r in event.routes]
                problems.append(
                    f"TrafficShifted {event.meta.event_id} for {event.model}: routes add up to "
                    f"{total:g}%, not 100%: {weights}"
                )
        elif isinstance(event, t.CanaryEvaluated) and event.verdict == "pass":
            passed.add((event.model, event.candidate_version))
        elif isinstance(event, t.PromotionRequested):
            asked.add((event.model, event.version))
        elif isinstance(event, t.ModelPromoted):
            key = (event.model, event.version)
            first = event.model not in champions
            if not (first or key in passed or key in asked):
                problems.append(
                    f"ModelPromoted {event.meta.event_id}: {event.model} v{event.version} was "
                    "promoted without a passed canary or an operator's PromotionRequested"
                )
            champions[event.model] = event.version
    return problems


def tampered_artifacts(events: list[Any]) -> list[str]:
    """Each registered package whose files no longer match the sha256 the log recorded.

    Reads the packages the ModelRegistered events point at (the registry's verified copies).
    """
    from modelbus.packaging import PackageError, resolve_package, verify_package

    problems = []
    for event in events:
        if not isinstance(event, t.ModelRegistered):
            continue
        try:
            verify_package(
                resolve_package(event.artifact_uri), expected_sha256=event.artifact_sha256
            )
        except (PackageError, OSError, ValueError) as error:
            problems.append(
                f"artifact of {event.model} v{event.version} ({event.artifact_uri}) does not "
                f"match what was registered: {error}"
            )
    return problems

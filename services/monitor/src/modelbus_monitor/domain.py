"""One model's monitor: joins, detectors per version and variant, episodes and health windows.

Pure: no I/O and no clock; every time is an event time in seconds passed in. Detector state
lives only here and is rebuilt on start by replaying the tail of the data topics (nothing is
pickled); alerts and windows already published are told to it first (``remember_alert``,
``HealthWindows.published``) so a replay neither repeats nor loses them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from modelbus_monitor.detectors import ErrorStream, InputStream
from modelbus_monitor.evidence import Finding, Gates, Where
from modelbus_monitor.health import HealthSummary, HealthWindows
from modelbus_monitor.hygiene import Episodes
from modelbus_monitor.joins import JoinBuffer, Labelled, ResultFacts, Served
from modelbus_monitor.reference import Reference, out_of_range

SHADOW = "shadow"

StreamKey = tuple[int, str]


@dataclass(frozen=True)
class Alert:
    """A finding that opens a drift episode: publish one DriftDetected."""

    model: str
    version: int
    variant: str
    finding: Finding

    @property
    def episode_id(self) -> str:
        """Stable across replays of the same data: model, version, variant, kind, onset."""
        f = self.finding
        onset = ",".join(f"{p}:{o}" for p, o in f.onset_offsets)
        return f"{self.model}/{self.version}/{self.variant}/{f.kind}/{onset}"


class ModelMonitor:
    """Everything the monitor knows about one model."""

    def __init__(
        self,
        model: str,
        gates: Gates,
        *,
        join_window_s: float,
        window_s: float,
        lateness_s: float,
        cooldown_s: float,
        rearm_after: int,
    ) -> None:
        self.model = model
        self.gates = gates
        self.joins = JoinBuffer(join_window_s)
        self.shadow_joins = JoinBuffer(join_window_s)
        """Shadow results share their request id with the champion's answer: joined apart,
        with labels only (a shadow answer served nobody, so it feeds no input detector)."""
        self.health = HealthWindows(window_s, lateness_s)
        self.episodes = Episodes(cooldown_s=cooldown_s, rearm_after=rearm_after)
        self.references: dict[int, Reference] = {}
        self._seen_s: dict[str, float] = {}
        self.unprofiled = 0
        self._inputs: dict[StreamKey, InputStream] = {}
        self._errors: dict[StreamKey, ErrorStream] = {}

    def register(self, version: int, reference: Reference) -> None:
        """A version's training profile."""
        self.references[version] = reference

    def remember_alert(self, version: int, variant: str, kind: str, at_s: float) -> None:
        """A DriftDetected already on the log (its detection time)."""
        self.episodes.remember((version, variant, kind), at_s)

    @property
    def watermark_s(self) -> float:
        """Event time every source (requests, results, labels) has reached."""
        return min(self._seen_s.values(), default=float("-inf"))

    def _advance(self, source: str, at_s: float) -> None:
        # The slowest source holds the watermark back, so a replay that reads one topic far
        # ahead of another never closes a window its labels still belong to.
        if at_s > self._seen_s.get(source, float("-inf")):
            self._seen_s[source] = at_s

    def request(self, request_id: str, features: Mapping[str, Any], where: Where) -> list[Alert]:
        """A PredictionRequest (features as a dict) at its ``sent_at``."""
        self._advance("request", where.at_s)
        return self._handle(self.joins.request(request_id, features, where))

    def result(self, request_id: str, result: ResultFacts) -> list[Alert]:
        """A PredictionResult."""
        self._advance("result", result.at_s)
        self.health.result(
            result.version, result.variant, result.at_s, result.latency_ms, result.score
        )
        if result.variant == SHADOW:
            return self._handle(self.shadow_joins.result(request_id, result))
        return self._handle(self.joins.result(request_id, result))

    def label(self, request_id: str, label: int, observed_at_s: float) -> list[Alert]:
        """A Feedback (joined with the shadow result of the same request too, if one waits:
        the shadow and champion results are written together, before any label)."""
        self._advance("label", observed_at_s)
        alerts = self._handle(self.joins.label(request_id, label, observed_at_s))
        if self.shadow_joins.has_result(request_id):
            alerts += self._handle(self.shadow_joins.label(request_id, label, observed_at_s))
        return alerts

    def dead_letter(self, version: int | None, at_s: float) -> None:
        """A DeadLetter on the model's DLQ; only those naming a version count for health."""
        if version is not None:
            self.health.dead_letter(version, at_s)

    def close(self, now_s: float | None = None) -> list[HealthSummary]:
        """Expire joins and close windows up to the watermark (or ``now_s`` when live)."""
        horizon = self.watermark_s if now_s is None else max(self.watermark_s, now_s)
        self.joins.expire(horizon)
        self.shadow_joins.expire(horizon)
        return self.health.close(horizon)

    def _handle(self, joined: list[Served | Labelled]) -> list[Alert]:
        alerts: list[Alert] = []
        for item in joined:
            if isinstance(item, Served):
                alerts += self._served(item)
            else:
                alerts += self._labelled(item)
        return alerts

    def _served(self, served: Served) -> list[Alert]:
        result = served.result
        reference = self.references.get(result.version)
        if reference is None:
            self.unprofiled += 1
            return []
        key = (result.version, result.variant)
        stream = self._inputs.get(key)
        if stream is None:
            stream = self._inputs[key] = InputStream(reference, self.gates)
        if out_of_range(served.features, reference):
            self.health.out_of_profile(result.version, result.variant, result.at_s)
        fired, findings = stream.update(served.features, result.score, served.where)
        return self._judge(key, stream.index, result.at_s, fired, findings)

    def _labelled(self, labelled: Labelled) -> list[Alert]:
        result = labelled.result
        if labelled.for_health:
            self.health.label(
                result.version, result.variant, labelled.observed_at_s, result.scores,
                labelled.label, result.predicted,
            )  # fmt: skip
        if labelled.where is None:
            return []
        key = (result.version, result.variant)
        stream = self._errors.get(key)
        if stream is None:
            stream = self._errors[key] = ErrorStream(self.gates)
        error = int(result.predicted != labelled.label)
        fired, findings = stream.update(error, labelled.where)
        return self._judge(key, stream.index, result.at_s, fired, findings, concept=True)

    def _judge(
        self,
        key: StreamKey,
        index: int,
        at_s: float,
        fired: int,
        findings: list[Finding],
        *,
        concept: bool = False,
    ) -> list[Alert]:
        version, variant = key
        kinds = ("concept",) if concept else ("covariate", "prediction")
        if fired:
            self.health.alarm(version, variant, at_s, fired)
        for kind in kinds:
            episode = (version, variant, kind)
            if fired:
                self.episodes.fired(episode, index)
            else:
                self.episodes.observe(episode, index)
        alerts = []
        for kind in kinds:
            mine = [f for f in findings if f.kind == kind]
            if mine and self.episodes.alarm(
                (version, variant, kind), index=index, at_s=mine[0].at_s
            ):
                first = mine[0]
                evidence = tuple(e for f in mine for e in f.evidence)
                finding = Finding(
                    kind, evidence, first.onset_at_s, first.onset_offsets, first.at_s, index
                )
                alerts.append(Alert(self.model, version, variant, finding))
        return alerts

"""Detectors of one stream (a model version and variant): River's ADWIN, used as it is.

Every numeric feature (standardised by the training profile) and the positive score get an
ADWIN on every observation (~1 us each); categorical features get a chi-square frequency test
against the profile per chunk. A firing is only a suspicion: it is rechecked every few
observations until the evidence (change point, effect size, Bonferroni-adjusted p-value)
passes the gates or the suspicion expires.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from river.drift import ADWIN

from modelbus_monitor.evidence import (
    Evidence,
    Finding,
    Gates,
    Where,
    error_evidence,
    numeric_evidence,
    onset_offsets,
    score_evidence,
)
from modelbus_monitor.reference import CategoricalReference, Reference, category_counts
from modelbus_monitor.reference import compare_counts as _compare

RECHECK_EVERY = 25
PREDICTION = "__prediction__"
ERROR = "__error__"

__all__ = ["ERROR", "PREDICTION", "ErrorStream", "InputStream"]


@dataclass
class _Track:
    """One ADWIN on one value stream, with the recent values it saw."""

    adwin: ADWIN
    values: deque[float]
    centre: float = 0.0
    scale: float = 1.0

    def update(self, value: float) -> bool:
        self.values.append(value)
        self.adwin.update((value - self.centre) / self.scale)
        return bool(self.adwin.drift_detected)


@dataclass
class _Chunk:
    reference: CategoricalReference
    counts: Counter[str] = field(default_factory=Counter)
    seen: int = 0


class _Stream:
    def __init__(self, gates: Gates) -> None:
        self.gates = gates
        self.index = 0
        self.positions: deque[Where] = deque(maxlen=gates.history)
        self.suspects: dict[str, int] = {}

    def _suspect(self, name: str) -> None:
        self.suspects[name] = self.index + self.gates.history // 2

    def _finding(self, kind: str, evidence: Evidence, onset: int) -> Finding:
        positions = list(self.positions)
        onset = min(onset, len(positions) - 1)
        return Finding(
            kind=kind,
            evidence=(evidence,),
            onset_at_s=positions[onset].at_s,
            onset_offsets=onset_offsets(positions, onset),
            at_s=positions[-1].at_s,
            index=self.index,
        )

    def _due(self, name: str) -> bool:
        if self.index >= self.suspects[name]:
            del self.suspects[name]
            return False
        return self.index % RECHECK_EVERY == 0


class InputStream(_Stream):
    """Covariate detectors on every contract feature and a prediction detector on the score."""

    def __init__(self, reference: Reference, gates: Gates) -> None:
        super().__init__(gates)
        self.reference = reference
        self.numeric = {
            ref.name: _Track(self._adwin(gates.adwin_delta), self._values(), ref.mean, ref.std)
            for ref in reference.numeric
        }
        self.references = {ref.name: ref for ref in reference.numeric}
        self.categorical = [_Chunk(ref) for ref in reference.categorical]
        self.score = _Track(self._adwin(gates.adwin_delta), self._values())

    def _adwin(self, delta: float) -> ADWIN:
        return ADWIN(delta=delta, clock=self.gates.adwin_clock)

    def _values(self) -> deque[float]:
        return deque(maxlen=self.gates.history)

    def update(
        self, features: Mapping[str, Any], score: float, where: Where
    ) -> tuple[int, list[Finding]]:
        """One joined request and result; returns (detector firings, gated findings)."""
        self.index += 1
        self.positions.append(where)
        just_fired = set()
        for name, track in self.numeric.items():
            value = features.get(name)
            if not isinstance(value, int | float) or not math.isfinite(value):
                value = track.centre
            if track.update(float(value)):
                just_fired.add(name)
                self._suspect(name)
        if self.score.update(score):
            just_fired.add(PREDICTION)
            self._suspect(PREDICTION)
        fired = len(just_fired)
        findings = []
        for chunk in self.categorical:
            chunk.counts[str(features.get(chunk.reference.name))] += 1
            chunk.seen += 1
            if chunk.seen >= self.gates.category_chunk:
                result = self._test_chunk(chunk)
                fired += result is not None
                if result is not None and result[1] >= self.gates.min_category_psi:
                    findings.append(self._chunk_finding(chunk, *result))
                chunk.counts, chunk.seen = Counter(), 0
        for name in list(self.suspects):
            if name in just_fired or self._due(name):
                finding = self._check(name)
                if finding is not None:
                    del self.suspects[name]
                    findings.append(finding)
        return fired, [f for f in findings if self.index >= self.gates.min_samples]

    def _test_chunk(self, chunk: _Chunk) -> tuple[float, float] | None:
        p_value, psi = _compare(
            category_counts(chunk.counts, chunk.reference), chunk.reference.counts
        )
        adjusted = min(1.0, p_value * self.reference.tests)
        return (adjusted, psi) if adjusted < self.gates.alpha else None

    def _chunk_finding(self, chunk: _Chunk, p_value: float, psi: float) -> Finding:
        positions = list(self.positions)
        start = max(len(positions) - chunk.seen, 0)
        evidence = Evidence(
            feature=chunk.reference.name,
            detector="chi2-frequency",
            statistic=psi,
            threshold=self.gates.min_category_psi,
            start_s=positions[start].at_s,
            end_s=positions[-1].at_s,
            sample_size=chunk.seen,
            p_value=p_value,
            effect_size=psi,
            kind="covariate",
        )
        return self._finding("covariate", evidence, start)

    def _check(self, name: str) -> Finding | None:
        if name == PREDICTION:
            checked = score_evidence(np.fromiter(self.score.values, float), self.gates)
            kind = "prediction"
        else:
            values = np.fromiter(self.numeric[name].values, float)
            checked = numeric_evidence(
                values, self.references[name], self.reference.tests, self.gates
            )
            kind = "covariate"
        if checked is None:
            return None
        evidence, onset = checked
        positions = list(self.positions)
        evidence = evidence.at(positions[min(onset, len(positions) - 1)].at_s, positions[-1].at_s)
        return self._finding(kind, evidence, onset)


class ErrorStream(_Stream):
    """A concept detector: ADWIN on the 0/1 error of labelled results."""

    def __init__(self, gates: Gates) -> None:
        super().__init__(gates)
        self.track = _Track(
            ADWIN(delta=gates.error_adwin_delta, clock=1), deque(maxlen=gates.history)
        )

    def update(self, error: int, where: Where) -> tuple[int, list[Finding]]:
        """One labelled result; returns (detector firings, gated findings)."""
        self.index += 1
        self.positions.append(where)
        fired = int(self.track.update(float(error)))
        if fired:
            self._suspect(ERROR)
        if ERROR in self.suspects and (fired or self._due(ERROR)):
            checked = error_evidence(np.fromiter(self.track.values, float), self.gates)
            if checked is not None and self.index >= self.gates.min_samples:
                del self.suspects[ERROR]
                evidence, onset = checked
                positions = list(self.positions)
                evidence = evidence.at(positions[onset].at_s, positions[-1].at_s)
                return fired, [self._finding("concept", evidence, onset)]
        return fired, []

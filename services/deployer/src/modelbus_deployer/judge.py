"""The canary judge: candidate vs champion over the same health windows; pure, no I/O.

Each guardrail says ``pass``, ``fail`` or ``wait``. Rates (dead letters, accuracy) are compared
with a one-sided bound on the candidate-minus-champion difference (Agresti-Caffo intervals);
the bound holds over every look of a rollout because the k-th look spends
``alpha * 6 / (pi^2 k^2)`` of the error rate, and those shares sum to ``alpha``. Too few samples
on either arm is ``wait``: a window without traffic is not a window without errors.

Latency is judged on the ratio of the arms' p99 in the same windows (both arms share the
workers, so a window's load is common to both and cancels in the ratio). A window's p99 is
its largest few latencies, so one window's ratio is noise: the candidate fails only when the
windows together put its p99 above the allowed ratio with the same confidence as the rates (a
one-sided Student t bound on the mean log ratio, spent the same way over looks), and waits
while its ratio is above the limit but within that noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from statistics import NormalDist, fmean, stdev

from scipy.stats import t as student_t

from modelbus.events import types as t

LATENCY_FLOOR_MS = 1.0
"""p99 values below this are taken as this: under a millisecond a ratio measures the timer."""


@dataclass(frozen=True, slots=True)
class Arm:
    """One variant's health, summed over the windows of a step (exact counts)."""

    windows: int = 0
    results: int = 0
    dead_letters: int = 0
    labelled: int = 0
    correct: int = 0
    log_loss_sum: float = 0.0
    latency_p99_sum: float = 0.0
    latency_p99s: tuple[float, ...] = ()
    """Each window's p99, in window order: arms built over the same windows pair them."""
    score_sum: float = 0.0

    def add(self, window: t.ModelHealth) -> Arm:
        """This arm with one more window."""
        return replace(
            self,
            windows=self.windows + 1,
            results=self.results + window.requests,
            dead_letters=self.dead_letters + max(window.errors, window.dead_letters),
            labelled=self.labelled + window.labelled,
            correct=self.correct + window.correct,
            log_loss_sum=self.log_loss_sum + (window.log_loss or 0.0) * window.labelled,
            latency_p99_sum=self.latency_p99_sum + window.latency_p99_ms * window.requests,
            latency_p99s=(*self.latency_p99s, window.latency_p99_ms),
            score_sum=self.score_sum + window.mean_score * window.requests,
        )

    @property
    def served(self) -> int:
        """Requests routed to this arm: results and dead letters."""
        return self.results + self.dead_letters

    @property
    def latency_p99_ms(self) -> float:
        """Result-weighted mean of the windows' p99 (windows hold quantiles, not samples)."""
        return self.latency_p99_sum / self.results if self.results else math.nan

    @property
    def mean_score(self) -> float:
        """Mean positive-class score."""
        return self.score_sum / self.results if self.results else math.nan

    @property
    def log_loss(self) -> float:
        """Mean log loss over labelled results."""
        return self.log_loss_sum / self.labelled if self.labelled else math.nan


@dataclass(frozen=True, slots=True)
class Judgement:
    """A step's verdict and the guardrails behind it."""

    verdict: str
    guardrails: list[t.GuardrailResult] = field(default_factory=list)

    @property
    def failed(self) -> list[t.GuardrailResult]:
        """Guardrails that failed."""
        return [g for g in self.guardrails if g.verdict == "fail"]

    def reasons(self) -> list[str]:
        """One line per guardrail."""
        return [f"{g.name}: {g.verdict} ({g.detail})" for g in self.guardrails]


def alpha_at_look(confidence: float, look: int) -> float:
    """The error rate the k-th look may spend, so that all looks together keep ``confidence``.

    >>> round(alpha_at_look(0.95, 1), 4), round(alpha_at_look(0.95, 10), 6)
    (0.0304, 0.000304)
    """
    return (1 - confidence) * 6 / (math.pi**2 * look**2)


def z_at_look(confidence: float, look: int) -> float:
    """One-sided z of the k-th look, so that all looks together keep ``confidence``.

    >>> round(z_at_look(0.95, 1), 3), round(z_at_look(0.95, 10), 3)
    (1.875, 3.428)
    """
    return NormalDist().inv_cdf(1 - alpha_at_look(confidence, look))


def paired_ratio(
    candidate: tuple[float, ...], champion: tuple[float, ...], alpha: float
) -> tuple[float, float | None]:
    """(geometric mean of the per-window ratios, its one-sided lower bound at ``alpha``).

    The bound is a Student t bound on the mean log ratio; with one window there is no spread
    to bound by, so no bound (None).

    >>> ratio, lower = paired_ratio((30.0, 33.0, 27.0), (10.0, 10.0, 10.0), 0.01)
    >>> round(ratio, 2), round(lower, 2)
    (2.99, 2.0)
    >>> paired_ratio((72.4,), (44.3,), 0.01)[1] is None
    True
    """
    logs = [
        math.log(max(c, LATENCY_FLOOR_MS) / max(h, LATENCY_FLOOR_MS))
        for c, h in zip(candidate, champion, strict=True)
    ]
    mean = fmean(logs)
    if len(logs) < 2:
        return math.exp(mean), None
    spread = stdev(logs) / math.sqrt(len(logs))
    return math.exp(mean), math.exp(mean - student_t.ppf(1 - alpha, len(logs) - 1) * spread)


def rate_difference(
    hits_a: int, n_a: int, hits_b: int, n_b: int, z: float
) -> tuple[float, float, float]:
    """(a - b, lower, upper) of two proportions, Agresti-Caffo (one success and one failure
    added to each arm, so zero counts still give an honest width).

    >>> [round(x, 3) for x in rate_difference(20, 100, 2, 100, 1.96)]
    [0.18, 0.091, 0.262]
    """
    p_a, p_b = (hits_a + 1) / (n_a + 2), (hits_b + 1) / (n_b + 2)
    se = math.sqrt(p_a * (1 - p_a) / (n_a + 2) + p_b * (1 - p_b) / (n_b + 2))
    difference = hits_a / max(n_a, 1) - hits_b / max(n_b, 1)
    return difference, p_a - p_b - z * se, p_a - p_b + z * se


def _bounded(
    name: str, worse: tuple[float, float, float], margin: float, samples: tuple[int, int], z: float
) -> t.GuardrailResult:
    difference, lower, upper = worse
    if lower > margin:
        verdict = "fail"
    elif upper <= margin:
        verdict = "pass"
    else:
        verdict = "wait"
    detail = (
        f"worse by {difference:+.4f}, bound [{lower:+.4f}, {upper:+.4f}] at z={z:.2f}, "
        f"allowed {margin:.4f}"
    )
    return t.GuardrailResult(
        name=name, verdict=verdict, candidate_samples=samples[0], champion_samples=samples[1],
        bound=upper, threshold=margin, detail=detail,
    )  # fmt: skip


def _starved(name: str, candidate: int, champion: int, needed: int) -> t.GuardrailResult:
    return t.GuardrailResult(
        name=name, verdict="wait", candidate_samples=candidate, champion_samples=champion,
        threshold=float(needed),
        detail=f"inconclusive: {candidate} candidate and {champion} champion samples, "
        f"{needed} needed on each arm",
    )  # fmt: skip


def guardrails(
    policy: t.RolloutPolicy, candidate: Arm, champion: Arm, *, look: int
) -> list[t.GuardrailResult]:
    """Every guardrail for one look at the step's accumulated windows."""
    z = z_at_look(policy.confidence, look)
    results: list[t.GuardrailResult] = []
    if min(candidate.served, champion.served) < policy.min_requests:
        results.append(
            _starved("error_rate", candidate.served, champion.served, policy.min_requests)
        )
        results.append(
            _starved("latency_p99", candidate.results, champion.results, policy.min_requests)
        )
    else:
        errors = rate_difference(
            candidate.dead_letters, candidate.served, champion.dead_letters, champion.served, z
        )
        results.append(
            _with_figures(
                _bounded("error_rate", errors, policy.max_error_rate_increase,
                         (candidate.served, champion.served), z),
                candidate.dead_letters / candidate.served, champion.dead_letters / champion.served,
            )
        )  # fmt: skip
        results.append(_latency(policy, candidate, champion, look))
    if min(candidate.labelled, champion.labelled) < policy.min_labelled:
        results.append(
            _starved("accuracy", candidate.labelled, champion.labelled, policy.min_labelled)
        )
        results.append(
            _starved("log_loss", candidate.labelled, champion.labelled, policy.min_labelled)
        )
    else:
        wrong = rate_difference(
            champion.correct, champion.labelled, candidate.correct, candidate.labelled, z
        )
        results.append(
            _with_figures(
                _bounded("accuracy", wrong, policy.max_accuracy_drop,
                         (candidate.labelled, champion.labelled), z),
                candidate.correct / candidate.labelled, champion.correct / champion.labelled,
            )
        )  # fmt: skip
        results.append(_log_loss(policy, candidate, champion))
    results.append(_score_shift(policy, candidate, champion))
    return results


def _with_figures(
    result: t.GuardrailResult, candidate: float, champion: float
) -> t.GuardrailResult:
    return replace(result, candidate=candidate, champion=champion)


def _latency(
    policy: t.RolloutPolicy, candidate: Arm, champion: Arm, look: int
) -> t.GuardrailResult:
    allowed = policy.max_latency_p99_ratio
    alpha = alpha_at_look(policy.confidence, look)
    ratio, lower = paired_ratio(candidate.latency_p99s, champion.latency_p99s, alpha)
    windows = len(candidate.latency_p99s)
    if candidate.latency_p99_ms > policy.latency_p99_ceiling_ms:
        verdict, why = "fail", f"over the {policy.latency_p99_ceiling_ms:g} ms ceiling"
    elif lower is not None and lower > allowed:
        verdict, why = "fail", f"above {allowed:g}x with confidence"
    elif ratio <= allowed:
        verdict, why = "pass", f"within {allowed:g}x"
    else:
        verdict, why = "wait", f"above {allowed:g}x, but within the windows' noise"
    bound = "no bound from one window" if lower is None else f"lower bound {lower:.2f}"
    over = f"{windows} window{'' if windows == 1 else 's'}"
    return t.GuardrailResult(
        name="latency_p99", verdict=verdict, candidate=candidate.latency_p99_ms,
        champion=champion.latency_p99_ms, candidate_samples=candidate.results,
        champion_samples=champion.results, threshold=allowed,
        detail=f"p99 {candidate.latency_p99_ms:.1f} ms vs {champion.latency_p99_ms:.1f} ms: "
        f"{why} (ratio {ratio:.2f} over {over}, {bound}; ceiling "
        f"{policy.latency_p99_ceiling_ms:g} ms)",
    )  # fmt: skip


def _log_loss(policy: t.RolloutPolicy, candidate: Arm, champion: Arm) -> t.GuardrailResult:
    increase = candidate.log_loss - champion.log_loss
    return t.GuardrailResult(
        name="log_loss", verdict="fail" if increase > policy.max_log_loss_increase else "pass",
        candidate=candidate.log_loss, champion=champion.log_loss,
        candidate_samples=candidate.labelled, champion_samples=champion.labelled,
        threshold=policy.max_log_loss_increase,
        detail=f"mean log loss {candidate.log_loss:.4f} vs {champion.log_loss:.4f} "
        f"(point estimate over the step; windows carry no variance)",
    )  # fmt: skip


def _score_shift(policy: t.RolloutPolicy, candidate: Arm, champion: Arm) -> t.GuardrailResult:
    shift = abs(candidate.mean_score - champion.mean_score)
    if math.isnan(shift):
        return _starved("score_shift", candidate.results, champion.results, 1)
    fails = not policy.require_labels and shift > policy.max_score_shift
    role = "judged: no labels required" if not policy.require_labels else "reported only"
    return t.GuardrailResult(
        name="score_shift", verdict="fail" if fails else "pass",
        candidate=candidate.mean_score, champion=champion.mean_score,
        candidate_samples=candidate.results, champion_samples=champion.results,
        threshold=policy.max_score_shift,
        detail=f"mean score {candidate.mean_score:.3f} vs {champion.mean_score:.3f} ({role})",
    )  # fmt: skip


def judge(
    policy: t.RolloutPolicy, candidate: Arm, champion: Arm, *, look: int, baked_s: float
) -> Judgement:
    """``fail`` if any guardrail fails; ``pass`` once every needed one passes and the step has
    baked; else ``wait``."""
    checked = guardrails(policy, candidate, champion, look=look)
    if any(g.verdict == "fail" for g in checked):
        return Judgement("fail", checked)
    needed = {"error_rate", "latency_p99"} | (
        {"accuracy", "log_loss"} if policy.require_labels else set()
    )
    conclusive = all(g.verdict == "pass" for g in checked if g.name in needed)
    if conclusive and baked_s >= policy.min_bake_s:
        return Judgement("pass", checked)
    return Judgement("wait", checked)

"""Canary judges on the same health streams -> results/rollout.json.

The deployer's own pure fold (``modelbus_deployer.domain.Deployer``, default policy) is fed
ModelHealth windows as the monitor publishes them (5 s event-time windows, each published 2 s
after it ends), generated from exact binomial counts at a stated request rate, for candidates
that are as good as the champion, wrong on a fifth of inputs, slightly worse, or as good while
the inputs drift and every version's accuracy drops alike. The same streams go through a
Flagger-style judge: a fixed threshold per window on the candidate alone (the champion's usual
accuracy minus the policy's allowed drop), ``threshold`` failed checks before rollback, the
same step weights, one step per passed check.

Figures are in event time: how long the decision rules need on the evidence. The ``live``
section adds what a live run adds (process start, model loading, broker round trips, a loaded
machine): real inference, monitor and deployer processes on the bench broker at a stated
offered rate (``benchmarks/rollout_live.py``).

``python -m benchmarks.rollout [--rate 1000] [--runs 200] [--seed 7] [--live-rate 1000]
[--no-live]``
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from benchmarks.common import write_result
from benchmarks.rollout_live import live_targets, run_live
from modelbus.config import KafkaSettings
from modelbus.events import types as t
from modelbus_deployer.config import Settings
from modelbus_deployer.domain import Deployer

WINDOW_S, LATENESS_S = 5.0, 2.0
T0 = datetime(2026, 1, 1, tzinfo=UTC)
CHAMPION_ACCURACY = 0.95
SCENARIOS = {
    # name: (champion accuracy, candidate accuracy) over the same windows
    "good": (CHAMPION_ACCURACY, CHAMPION_ACCURACY),
    # Wrong on a fifth of inputs: 0.8 * 0.95 + 0.2 * 0.05.
    "bad_slice": (CHAMPION_ACCURACY, 0.8 * CHAMPION_ACCURACY + 0.2 * (1 - CHAMPION_ACCURACY)),
    "slightly_worse": (CHAMPION_ACCURACY, CHAMPION_ACCURACY - 0.04),
    # The inputs got harder for every version alike (drift): the candidate is as good as the
    # champion, both below the level a fixed threshold was set for.
    "good_while_inputs_drift": (0.90, 0.90),
}
FLAGGER = {"min_accuracy": CHAMPION_ACCURACY - 0.02, "threshold": 5}
MAX_WINDOWS = 120


@dataclass
class Outcome:
    """How one rollout ended."""

    decision: str  # promoted | rolled_back | undecided
    seconds: float  # from ModelRegistered to the decision (event time)
    candidate_requests: int  # answered by the candidate before the decision
    since_first_breach_s: float | None = None  # first breaching window's end -> rollback
    starved_decisions: int = 0  # pass/fail verdicts on fewer samples than the policy's minimum
    shares: list[float] = field(default_factory=list)


def stream(rng: np.random.Generator, rate: float, accuracies: tuple[float, float]) -> Any:
    """Per window: (champion n, correct), (candidate n, correct) for a given canary share."""

    def window(share: float) -> tuple[tuple[int, int], tuple[int, int]]:
        n1 = int(rng.poisson(rate * WINDOW_S * share))
        n0 = int(rng.poisson(rate * WINDOW_S * (1 - share)))
        return (
            (n0, int(rng.binomial(n0, accuracies[0]))),
            (n1, int(rng.binomial(n1, accuracies[1]))),
        )

    return window


def health(version: int, variant: str, start: datetime, n: int, correct: int) -> t.ModelHealth:
    """One monitor window with exact counts; log loss from the right/wrong split."""
    log_loss = (correct * 0.12 + (n - correct) * 1.8) / n if n else None
    meta = t.EventMeta(event_id=f"h-{version}-{variant}-{start.timestamp()}", occurred_at=start,
                       producer="monitor@bench", correlation_id="bench")  # fmt: skip
    return t.ModelHealth(
        meta=meta, model="credit", version=version, variant=variant, window_start=start,
        window_end=start + timedelta(seconds=WINDOW_S), requests=n, errors=0,
        latency_p50_ms=4.0, latency_p99_ms=9.0, mean_score=0.5, labelled=n, correct=correct,
        accuracy=correct / n if n else None, log_loss=log_loss,
    )  # fmt: skip


def registered(version: int, at: datetime) -> t.ModelRegistered:
    meta = t.EventMeta(event_id=f"reg-{version}", occurred_at=at, producer="registry@bench",
                       correlation_id=f"reg-{version}")  # fmt: skip
    return t.ModelRegistered(meta=meta, model="credit", version=version, run_id="r",
                             artifact_uri="file:///p", artifact_sha256="0" * 64,
                             metrics={})  # fmt: skip


def run_sequential(policy: t.RolloutPolicy, window: Any, breaching: bool) -> Outcome:
    """The deployer's fold on one stream."""
    deployer = Deployer(producer="deployer@bench", policy=policy)
    deployer.decide(registered(1, T0), now=T0)
    asked_at = T0 + timedelta(seconds=1)
    share = next(
        r.weight_pct for d in deployer.decide(registered(2, asked_at), now=asked_at)
        if isinstance(d, t.TrafficShifted) for r in d.routes if r.version == 2
    )  # fmt: skip
    served, starved, first_breach = 0, 0, None
    shares = [share]
    for k in range(1, MAX_WINDOWS):
        start = T0 + timedelta(seconds=WINDOW_S * k)
        end = start + timedelta(seconds=WINDOW_S)
        (n0, c0), (n1, c1) = window(share / 100)
        served += n1
        if breaching and first_breach is None and n1 and c1 / n1 < c0 / max(n0, 1) - 0.02:
            first_breach = end
        now = end + timedelta(seconds=LATENESS_S)
        decided = deployer.decide(health(1, "champion", start, n0, c0), now=now)
        decided += deployer.decide(health(2, "canary", start, n1, c1), now=now)
        for decision in decided:
            if isinstance(decision, t.CanaryEvaluated) and decision.verdict != "wait":
                starved += any(
                    g.name == "accuracy" and min(g.candidate_samples, g.champion_samples)
                    < policy.min_labelled for g in decision.guardrails
                )  # fmt: skip
            if isinstance(decision, t.TrafficShifted):
                share = sum(r.weight_pct for r in decision.routes if r.version == 2)
                shares.append(share)
            if isinstance(decision, t.ModelPromoted | t.ModelRolledBack):
                kind = "promoted" if isinstance(decision, t.ModelPromoted) else "rolled_back"
                since = (now - first_breach).total_seconds() if first_breach else None
                return Outcome(kind, (now - asked_at).total_seconds(), served,
                               since, starved, shares)  # fmt: skip
    return Outcome("undecided", WINDOW_S * MAX_WINDOWS, served, None, starved, shares)


def run_flagger(steps: list[float], window: Any, breaching: bool) -> Outcome:
    """Fixed threshold per window on the candidate alone; ``threshold`` failures roll back."""
    step, failures, served, first_breach = 0, 0, 0, None
    for k in range(1, MAX_WINDOWS):
        share = steps[step]
        end_s = 1 + WINDOW_S * k  # one check per interval, from the rollout's start
        (n0, c0), (n1, c1) = window(share / 100)
        served += n1
        if breaching and first_breach is None and n1 and c1 / n1 < c0 / max(n0, 1) - 0.02:
            first_breach = end_s
        ok = n1 > 0 and c1 / n1 >= FLAGGER["min_accuracy"]  # no data counts as a failed check
        decided_s = end_s + LATENESS_S
        if not ok:
            failures += 1
            if failures >= FLAGGER["threshold"]:
                since = decided_s - first_breach if first_breach else None
                return Outcome("rolled_back", decided_s - 1, served, since)
            continue
        step += 1
        if step == len(steps) or steps[step] >= 100:
            return Outcome("promoted", decided_s - 1, served)
    return Outcome("undecided", WINDOW_S * MAX_WINDOWS, served)


def summarise(outcomes: list[Outcome]) -> dict[str, Any]:
    """Rates and distributions over the runs of one scenario."""
    count = len(outcomes)

    def rate(kind: str) -> float:
        return round(sum(o.decision == kind for o in outcomes) / count, 4)

    def quantiles(values: list[float]) -> dict[str, float] | None:
        if not values:
            return None
        ordered = sorted(values)
        pick = lambda q: ordered[min(len(ordered) - 1, math.floor(q * len(ordered)))]  # noqa: E731
        return {"p50": round(pick(0.5), 2), "p95": round(pick(0.95), 2), "max": ordered[-1]}

    decided = [o for o in outcomes if o.decision != "undecided"]
    breaches = [o.since_first_breach_s for o in decided if o.since_first_breach_s is not None]
    return {
        "runs": count,
        "promoted": rate("promoted"),
        "rolled_back": rate("rolled_back"),
        "undecided": rate("undecided"),
        "seconds_to_decision": quantiles([o.seconds for o in decided]),
        "candidate_requests_before_decision": quantiles(
            [float(o.candidate_requests) for o in decided]
        ),
        "first_breaching_window_to_rollback_s": quantiles(breaches),
        "decisions_on_fewer_samples_than_minimum": sum(o.starved_decisions for o in outcomes),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1000.0, help="requests per second")
    parser.add_argument("--runs", type=int, default=200, help="streams per scenario")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--live-rate", type=float, default=1000.0,
                        help="offered requests per second of the live run")  # fmt: skip
    parser.add_argument("--no-live", action="store_true", help="simulated streams only")
    args = parser.parse_args()
    policy = Settings().policy()
    started = time.perf_counter()
    results: dict[str, Any] = {}
    for offset, (name, accuracy) in enumerate(SCENARIOS.items()):
        breaching = accuracy[1] < accuracy[0]
        seeds = np.random.SeedSequence([args.seed, offset]).spawn(args.runs)
        ours, flagger = [], []
        for seed in seeds:
            # The same stream for both judges: one generator state, replayed.
            state = np.random.default_rng(seed).bit_generator.state
            rng = np.random.default_rng(seed)
            ours.append(run_sequential(policy, stream(rng, args.rate, accuracy), breaching))
            rng.bit_generator.state = state
            flagger.append(run_flagger(list(policy.steps_pct), stream(rng, args.rate, accuracy),
                                       breaching))  # fmt: skip
        results[name] = {
            "champion_accuracy": round(accuracy[0], 4),
            "candidate_accuracy": round(accuracy[1], 4),
            "sequential_judge": summarise(ours),
            "flagger_style_judge": summarise(flagger),
        }
        print(f"[rollout] {name}: {results[name]}", flush=True)
    good = results["good"]["sequential_judge"]
    bad = results["bad_slice"]["sequential_judge"]
    live = None if args.no_live else run_live(KafkaSettings(), args.live_rate)
    write_result(
        "rollout",
        {
            "what": "Canary decisions of the deployer's fold (default policy) vs a Flagger-style "
            "fixed-threshold judge on the same simulated ModelHealth streams (event time).",
            "request_rate_per_s": args.rate,
            "window_s": WINDOW_S,
            "window_published_after_end_s": LATENESS_S,
            "policy": {k: v for k, v in policy.to_avro().items()},
            "flagger_style": {
                **FLAGGER,
                "steps_pct": list(policy.steps_pct),
                "interval_s": WINDOW_S,
            },
            "scenarios": results,
            "targets": {
                "good_promoted_under_120_s_p95": (good["seconds_to_decision"] or {}).get(
                    "p95", math.inf
                )
                < 120,
                "bad_rollback_within_5_s_of_first_breaching_window_p95": (
                    bad["first_breaching_window_to_rollback_s"] or {}
                ).get("p95", math.inf)
                <= 5,
                **({} if live is None else live_targets(live)),
                "no_decision_below_minimum_samples": all(
                    r["sequential_judge"]["decisions_on_fewer_samples_than_minimum"] == 0
                    for r in results.values()
                ),
            },
            "live": live,
            "runtime_s": round(time.perf_counter() - started, 1),
        },
    )


if __name__ == "__main__":
    main()

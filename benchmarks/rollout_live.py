"""A live rollout on the bench broker: real inference, monitor and deployer processes.

One inference worker, one monitor (default 5 s windows, 2 s lateness) and one deployer with
the default policy serve a model while labelled traffic is offered at a stated rate (each
answer labelled as it arrives). v1 is promoted outright; v2, as good as v1, walks every step
to promotion; v3, wrong on a fifth of the inputs (inverted labels where ``elevel == 0``), is
rolled back. Every figure is read back from the log afterwards, in the events' own times:

- good: ``ModelRegistered`` -> ``ModelPromoted`` of v2;
- bad: requests v3 answered (its ``PredictionResult`` on ``.predictions``), and from the end
  of the first breaching canary window (v3's accuracy below the champion's in the same window
  by more than the policy's allowed drop) to ``ModelRolledBack`` and to the last
  ``PredictionResult`` v3 served.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from modelbus.bus import HEALTH_TOPIC, LIFECYCLE_TOPIC
from modelbus.bus.reading import read_events
from modelbus.bus.topics import data_topic
from modelbus.cli.traffic import LiveTraffic
from modelbus.config import KafkaSettings
from modelbus.events import types as t
from modelbus_deployer.config import Settings as DeployerSettings
from tests.support.broker import create_model_topics, publish_lifecycle, request_codec
from tests.support.events import registered
from tests.support.monitor import start_monitor
from tests.support.packages import CONTRACT, build_credit_package
from tests.support.processes import REPO, start_worker, stop_workers

LATENESS_S = 2.0  # the monitor's, as started here
SETTLE_S = 10.0  # after the rollback: results still in flight land before the log is read


def log(message: str) -> None:
    print(f"[rollout-live] {message}", flush=True)


def _wait_for(bootstrap: str, model: str, kind: type, version: int, timeout_s: float) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for event in read_events(bootstrap, LIFECYCLE_TOPIC, request_codec(), key=model):
            if isinstance(event, kind) and getattr(event, "version", None) == version:
                return event
        time.sleep(1.0)
    return None


def _deployer(bootstrap: str, model: str) -> Any:
    import os
    import subprocess
    import sys

    environment = {
        **os.environ,
        "MODELBUS_BOOTSTRAP_SERVERS": bootstrap,
        "MODELBUS_DEPLOYER_GROUP_ID": f"bench-deployer-{model}",
        "MODELBUS_DEPLOYER_MODELS_PATTERN": model,
    }
    return subprocess.Popen([sys.executable, "-m", "modelbus_deployer", "run"], env=environment,
                            cwd=REPO)  # fmt: skip


def _s(later: datetime, earlier: datetime) -> float:
    return round((later - earlier).total_seconds(), 2)


def run_live(settings: KafkaSettings, rate: float) -> dict[str, Any]:
    """One live good rollout and one live bad rollout at ``rate`` offered requests/s."""
    bootstrap = settings.bootstrap_servers
    model = f"benchlive{uuid.uuid4().hex[:8]}"
    codec = request_codec()
    policy = DeployerSettings().policy()
    create_model_topics(settings, model)
    root = Path(tempfile.mkdtemp(prefix="rollout-live-"))
    packages = {}
    for version, extra in ((1, {}), (2, {}), (3, {"flip_where": ("elevel", 0)})):
        directory = root / f"v{version}"
        packages[version] = (directory, build_credit_package(directory, seed=1, n_rows=4000,
                                                             epochs=60, **extra))  # fmt: skip
    processes = [
        start_worker(bootstrap, model, MODELBUS_INFERENCE_SERVE_LATEST_WITHOUT_ROUTES="false"),
        start_monitor(bootstrap, model, MODELBUS_MONITOR_WINDOW_S="5",
                      MODELBUS_MONITOR_LATENESS_S="2"),
        _deployer(bootstrap, model),
    ]  # fmt: skip
    traffic = LiveTraffic(settings, codec, model=model, rate_per_s=rate, seed=11,
                          contract=CONTRACT)  # fmt: skip
    result: dict[str, Any] = {"offered_requests_per_s": rate, "model": model}
    try:
        publish_lifecycle(settings, codec, registered(model, 1, *packages[1]))
        if _wait_for(bootstrap, model, t.ModelPromoted, 1, 120) is None:
            raise RuntimeError("v1 was never promoted")
        traffic.enter("v1")
        traffic.start()
        started = time.monotonic()
        time.sleep(20)
        log(f"v1 warm: sent {traffic.sent}, answered {traffic.tally.count()}")

        traffic.enter("v2")
        sent_before, answered_before, at = traffic.sent, traffic.tally.count(), time.monotonic()
        good = registered(model, 2, *packages[2])
        publish_lifecycle(settings, codec, good)
        promoted = _wait_for(bootstrap, model, t.ModelPromoted, 2, 420)
        rolled_good = None if promoted else _wait_for(bootstrap, model, t.ModelRolledBack, 2, 1)
        elapsed = time.monotonic() - at
        result["sustained"] = {
            "sent_per_s": round((traffic.sent - sent_before) / elapsed, 1),
            "answered_per_s": round((traffic.tally.count() - answered_before) / elapsed, 1),
            "pending_at_end": traffic.pending,
            "over_s": round(elapsed, 1),
        }
        log(f"v2: promoted={promoted is not None} {result['sustained']}")
        result["good"] = {
            "decision": "promoted" if promoted else ("rolled_back" if rolled_good else "none"),
            "registered_to_promoted_s": _s(promoted.meta.occurred_at, good.meta.occurred_at)
            if promoted
            else None,
            "rolled_back_reason": rolled_good.reason if rolled_good else None,
        }

        traffic.enter("v3")
        bad = registered(model, 3, *packages[3])
        publish_lifecycle(settings, codec, bad)
        rolled = _wait_for(bootstrap, model, t.ModelRolledBack, 3, 300)
        time.sleep(SETTLE_S)
        result["bad"] = _bad_figures(bootstrap, model, bad, rolled, policy, champion=2)
        log(f"v3: {result['bad']}")
        result["run_s"] = round(time.monotonic() - started, 1)
        result["missed"] = missed(result, policy)
    finally:
        traffic.stop(drain_s=10)
        stop_workers(processes)
    return result


def _bad_figures(bootstrap: str, model: str, bad: t.ModelRegistered, rolled: Any,
                 policy: t.RolloutPolicy, *, champion: int) -> dict[str, Any]:  # fmt: skip
    codec = request_codec()
    served = [
        r
        for r in read_events(bootstrap, data_topic(model, "predictions"), codec, timeout_s=600)
        if isinstance(r, t.PredictionResult) and r.version == bad.version
    ]
    if rolled is None:
        return {"decision": "none", "requests_answered": len(served)}
    health = [
        h
        for h in read_events(bootstrap, HEALTH_TOPIC, codec, key=model)
        if isinstance(h, t.ModelHealth) and h.model == model
    ]
    champion_acc = {
        h.window_start: h.accuracy
        for h in health
        if (h.version, h.variant) == (champion, "champion") and h.accuracy is not None
    }
    breaching = sorted(
        (h for h in health
         if (h.version, h.variant) == (bad.version, "canary") and h.accuracy is not None
         and h.window_start in champion_acc
         and h.accuracy < champion_acc[h.window_start] - policy.max_accuracy_drop),
        key=lambda h: h.window_start,
    )  # fmt: skip
    last = max((r.meta.occurred_at for r in served), default=None)
    failed = [
        e
        for e in read_events(bootstrap, LIFECYCLE_TOPIC, codec, key=model)
        if isinstance(e, t.CanaryEvaluated)
        and (e.candidate_version, e.verdict) == (bad.version, "fail")
    ]
    figures: dict[str, Any] = {
        "decision": "rolled_back",
        "reason": rolled.reason,
        "requests_answered": len(served),
        "registered_to_rolled_back_s": _s(rolled.meta.occurred_at, bad.meta.occurred_at),
        "rolled_back_to_last_canary_result_s": _s(last, rolled.meta.occurred_at) if last else None,
        "canary_windows": [
            {"start": h.window_start.isoformat(), "requests": h.requests,
             "labelled": h.labelled, "accuracy": h.accuracy}
            for h in sorted(health, key=lambda h: h.window_start)
            if (h.version, h.variant) == (bad.version, "canary")
        ],
    }  # fmt: skip
    if failed and failed[0].health_through is not None:
        judged = failed[0]
        accuracy = [g for g in judged.guardrails if g.name == "accuracy"]
        figures |= {
            "failed_judgement_health_through": judged.health_through.isoformat(),
            "failed_judgement_candidate_labelled": accuracy[0].candidate_samples
            if accuracy
            else None,
            "judged_window_end_to_rolled_back_s": _s(
                rolled.meta.occurred_at, judged.health_through
            ),
            "judged_window_end_to_last_canary_result_s": _s(last, judged.health_through)
            if last
            else None,
        }
    if breaching:
        first = breaching[0]
        figures |= {
            "first_breaching_window": {
                "start": first.window_start.isoformat(),
                "end": first.window_end.isoformat(),
                "published": first.meta.occurred_at.isoformat(),
                "candidate_accuracy": round(first.accuracy or 0.0, 4),
                "champion_accuracy": round(champion_acc[first.window_start] or 0.0, 4),
                "candidate_requests": first.requests,
            },
            "first_breaching_window_end_to_rolled_back_s": _s(
                rolled.meta.occurred_at, first.window_end
            ),
            "first_breaching_window_end_to_last_canary_result_s": _s(last, first.window_end)
            if last
            else None,
        }
    return figures


def missed(live: dict[str, Any], policy: t.RolloutPolicy) -> list[str]:
    """Each live target missed, by how much and why (from the run's own figures)."""
    notes = []
    promoted_s = live.get("good", {}).get("registered_to_promoted_s")
    if promoted_s is None or promoted_s >= 120:
        notes.append(f"good candidate promoted after {promoted_s} s (target < 120 s)")
    bad = live.get("bad", {})
    last_s = bad.get("first_breaching_window_end_to_last_canary_result_s")
    if last_s is not None and last_s > 5:
        first = bad["first_breaching_window"]
        labelled = next((w["labelled"] for w in bad["canary_windows"]
                         if w["start"] == first["start"]), None)  # fmt: skip
        why = (
            f"under the policy's min_labelled {policy.min_labelled}, so the judge waited (it "
            "never decides on fewer)"
            if labelled is None or labelled < policy.min_labelled
            else "not yet a conclusive bound, so the judge waited"
        )
        notes.append(
            f"last canary result {last_s} s after the first breaching window's end (target 5 s, "
            f"missed by {last_s - 5:.1f} s): that window held {labelled} labelled canary "
            f"results, {why} for the next window, published "
            f"{LATENESS_S:g} s after its end; from the end of the window it failed on, the "
            f"rollback took {bad.get('judged_window_end_to_rolled_back_s')} s and the last "
            f"canary result came {bad.get('judged_window_end_to_last_canary_result_s')} s after"
        )
    sustained = live.get("sustained", {})
    offered = live.get("offered_requests_per_s", 0)
    if sustained and sustained["answered_per_s"] < 0.97 * offered:
        notes.append(
            f"offered {offered:g} requests/s, answered {sustained['answered_per_s']} /s during "
            f"the good rollout ({sustained['pending_at_end']} unanswered at its end): the 2 "
            "shared cores did not fully sustain the offered rate in this run"
        )
    return notes


def live_targets(live: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets on the live run (None where the run gave no figure)."""
    promoted_s = live.get("good", {}).get("registered_to_promoted_s")
    last_s = live.get("bad", {}).get("first_breaching_window_end_to_last_canary_result_s")
    return {
        "live_good_promoted_under_120_s": None if promoted_s is None else promoted_s < 120,
        "live_no_canary_result_5_s_after_first_breaching_window": None
        if last_s is None
        else last_s <= 5,
    }

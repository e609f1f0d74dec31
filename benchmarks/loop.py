"""The loop's timings and the audit's speed -> results/loop.json.

1. Loop: `modelbus demo --fast --summary` on a fresh broker of its own; from its summary (read
   back from the lifecycle log), seconds from the approval-rule switch to DriftDetected, to
   ModelTrained, to ModelRegistered and to ModelPromoted, with the demo's settings.
2. Audit speed: a generated lifecycle log of N events (default 1M; many models, each walking
   training -> registration -> rollout steps -> promotion), encoded as the services write it
   (single-object Avro, chain headers); timed: decode + chain check + every audit check, in one
   process, from messages in memory (reading them from Kafka is not included).

``python -m benchmarks.loop [--events N] [--skip-demo]``
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import write_result
from modelbus.audit import audit
from modelbus.bus.chain import Chain, Link
from modelbus.events import build_codec, example_event, new_meta
from modelbus.events import types as t

REPO = Path(__file__).resolve().parents[1]
KAFKA = str(REPO / "infra" / "kafka" / "kafka.sh")


def log(message: str) -> None:
    print(f"[loop] {message}", flush=True)


def _history(model: str) -> list[Any]:
    """One model's loop: ask, train, register, a four-step canary, promote (12 events)."""
    ask = t.TrainingRequested(meta=new_meta("ops@cli"), model=model, reason="bench",
                              requested_by="bench")  # fmt: skip
    started = t.TrainingStarted(meta=new_meta("trainer@b:1", cause=ask), model=model,
                                job_id=f"job-{model}", trigger="TrainingRequested")  # fmt: skip
    trained = dataclasses.replace(
        example_event(t.ModelTrained), meta=new_meta("trainer@b:1", cause=started), model=model
    )
    registered = t.ModelRegistered(meta=new_meta("registry@b:2", cause=trained), model=model,
                                   version=1, run_id="r", artifact_uri="file:///nowhere",
                                   artifact_sha256="0" * 64, metrics={})  # fmt: skip
    events: list[Any] = [ask, started, trained, registered]
    cause: Any = registered
    for pct in (5.0, 25.0, 50.0, 100.0):
        routes = [t.Route(variant="canary", version=1, weight_pct=pct)]
        if pct < 100:
            routes.append(t.Route(variant="champion", version=1, weight_pct=100 - pct))
        shift = t.TrafficShifted(meta=new_meta("deployer@b:3", cause=cause), model=model,
                                 routes=routes, reason=f"step {pct:g}%")  # fmt: skip
        cause = t.CanaryEvaluated(meta=new_meta("deployer@b:3", cause=shift), model=model,
                                  candidate_version=1, step_pct=pct, verdict="pass",
                                  reasons=[], metrics={})  # fmt: skip
        events += [shift, cause]
    events.append(t.ModelPromoted(meta=new_meta("deployer@b:3", cause=cause), model=model,
                                  version=1, reason="canary passed"))  # fmt: skip
    return events


def audit_speed(n_events: int) -> dict[str, Any]:
    """Events/s of decode + chain check + audit over a generated log of ``n_events``."""
    codec = build_codec()
    chains = {role: Chain(role) for role in ("ops", "trainer", "registry", "deployer")}
    links: list[Link] = []
    models = 0
    while len(links) < n_events:
        model = f"m{models}"
        models += 1
        for event in _history(model):
            value = codec.encode(event)
            chain = chains[event.meta.producer.split("@")[0]]
            headers = dict(chain.link(model.encode(), value))
            links.append(Link(f"lc[0]@{len(links)}", model.encode(), value, headers))
    links = links[:n_events]
    log(f"generated {len(links)} events for {models} models; auditing")
    started = time.perf_counter()
    events = [codec.decode(link.value, where=link.where) for link in links]
    decoded = time.perf_counter()
    report = audit(events, links=links)
    finished = time.perf_counter()
    return {
        "events": len(links),
        "models": models,
        "problems_found": len(report.problems),
        "decode_s": round(decoded - started, 2),
        "checks_s": round(finished - decoded, 2),
        "events_per_s": round(len(links) / (finished - started)),
        "scope": "in memory: decode + chain check + every audit check; Kafka reads excluded",
    }


def loop_timings() -> dict[str, Any]:
    """Run the fast demo on a broker of its own and return its summary's timings."""
    with tempfile.TemporaryDirectory(prefix="modelbus-loop-") as workdir:
        env = {**os.environ, "KAFKA_PORT": "29300", "MODELBUS_RUN_DIR": workdir}
        subprocess.run([KAFKA, "up"], env=env, check=True)
        summary = Path(workdir) / "summary.json"
        try:
            finished = subprocess.run(
                [sys.executable, "-m", "modelbus.cli", "demo", "--fast", "--summary", str(summary)],
                env={**env, "MODELBUS_BOOTSTRAP_SERVERS": "127.0.0.1:29300"},
                cwd=REPO,
                timeout=1200,
            )
        finally:
            subprocess.run([KAFKA, "down"], env=env, check=False)
        data = json.loads(summary.read_text()) if summary.exists() else {}
        return {"demo_exit_code": finished.returncode, **data}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--skip-demo", action="store_true", help="Only the audit speed.")
    parser.add_argument(
        "--demo-summary",
        type=Path,
        help="Take the loop's timings from this `modelbus demo --summary` file instead of "
        "running the demo again.",
    )
    args = parser.parse_args()
    result: dict[str, Any] = {"audit": audit_speed(args.events)}
    log(f"audit: {result['audit']['events_per_s']} events/s")
    if args.demo_summary is not None:
        result["loop"] = {"source": f"modelbus demo --fast --summary ({args.demo_summary.name})",
                          **json.loads(args.demo_summary.read_text())}  # fmt: skip
    elif not args.skip_demo:
        result["loop"] = loop_timings()
    path = write_result("loop", result)
    log(f"wrote {path}")


if __name__ == "__main__":
    main()

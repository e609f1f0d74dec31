"""``modelbus demo``: the whole loop on generated data, run by the five real services.

The demo only does what a bank and its operators would: it asks once for a first model, sends
live labelled traffic, changes the approval rule, and at the end asks for a deliberately bad
model. Everything else — drift detection, retraining, registration, canary steps, promotion and
rollback — is the services' work, shown as it lands on the log. The demo exits 0 only if the
log, read back at the end, tells that whole story.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from modelbus.bus import LIFECYCLE_TOPIC, Publisher
from modelbus.bus.reading import read_events
from modelbus.bus.schema_topic import kafka_schema_store
from modelbus.bus.topics import ensure_deployment_topics
from modelbus.cli.follow import TopicFollower
from modelbus.cli.processes import ServiceProcess
from modelbus.cli.render import one_line
from modelbus.cli.story import Story
from modelbus.cli.traffic import LiveTraffic, wait_until
from modelbus.config import KafkaSettings
from modelbus.events import Codec, GenericRecord, build_codec, new_meta
from modelbus.events import types as t
from modelbus.events.meta import producer_id
from modelbus.trust import KeysMissing, load_signer

MODEL = "credit"
SERVICES = ("registry", "trainer", "inference", "monitor", "deployer")
OLD_RULE, NEW_RULE = 0, 4
BAD_SLICE = "elevel=0"
"""The bad model learns inverted labels for one education level: about a fifth of answers."""


@dataclass(frozen=True)
class Plan:
    """How long each act lasts and how the services are tuned for a demo-sized stream."""

    rate_per_s: float
    answers_before_drift: int
    answers_after_promotion: int
    timeout_s: float
    env: dict[str, str] = field(default_factory=dict)


_COMMON_ENV = {
    # A small reference set, so that after drift the recent labelled traffic dominates.
    "MODELBUS_TRAINER_REFERENCE_ROWS": "3000",
    "MODELBUS_TRAINER_EPOCHS": "30",
    "MODELBUS_TRAINER_BATCH_SIZE": "64",
    "MODELBUS_TRAINER_DRIFT_COOLDOWN_S": "3600",
    # After drift, train on the new rule's labelled traffic only, once there is enough of it.
    "MODELBUS_TRAINER_MIN_POST_DRIFT_ROWS": "2500",
    "MODELBUS_TRAINER_DRIFT_DATA_WAIT_S": "90",
    "MODELBUS_INFERENCE_SERVE_LATEST_WITHOUT_ROUTES": "false",
    # A demo-sized stream (a few hundred requests/s): smaller samples per step, wider margins
    # than the production defaults, so a canary is judged in tens of seconds, not minutes.
    "MODELBUS_DEPLOYER_MIN_REQUESTS": "150",
    "MODELBUS_DEPLOYER_MIN_LABELLED": "150",
    "MODELBUS_DEPLOYER_MIN_BAKE_S": "5",
    "MODELBUS_DEPLOYER_MAX_ERROR_RATE_INCREASE": "0.02",
    "MODELBUS_DEPLOYER_MAX_ACCURACY_DROP": "0.05",
    "MODELBUS_DEPLOYER_MAX_LOG_LOSS_INCREASE": "0.5",
    # Every service, the broker and the traffic share a laptop's cores here: latency is judged
    # against the champion's, and the absolute ceiling is a production setting.
    "MODELBUS_DEPLOYER_LATENCY_P99_CEILING_MS": "5000",
    "MODELBUS_MONITOR_WINDOW_S": "2",
    "MODELBUS_MONITOR_LATENESS_S": "2",
}
PLANS = {
    "full": Plan(
        rate_per_s=200,
        answers_before_drift=6_000,
        answers_after_promotion=4_000,
        timeout_s=600,
        env=_COMMON_ENV,
    ),
    "fast": Plan(
        rate_per_s=250,
        answers_before_drift=3_000,
        answers_after_promotion=1_500,
        timeout_s=300,
        env={**_COMMON_ENV, "MODELBUS_TRAINER_EPOCHS": "15"},
    ),
}


@dataclass
class Timeline:
    """When each act ended, for the summary table."""

    started: float = field(default_factory=time.monotonic)
    marks: list[tuple[str, float, str]] = field(default_factory=list)

    def mark(self, act: str, detail: str = "") -> None:
        """Record that ``act`` ended now."""
        self.marks.append((act, time.monotonic(), detail))


def run_demo(
    settings: KafkaSettings,
    console: Console,
    *,
    fast: bool = False,
    keep_running: bool = False,
    summary: Path | None = None,
) -> int:
    """Run the story; returns the process exit code. ``summary``: write its timings as JSON."""
    plan = PLANS["fast" if fast else "full"]
    try:
        operator = load_signer("operator")
        for role in ("registry", "trainer", "deployer", "monitor", "inference"):
            load_signer(role)  # each service refuses to start without its key: say so here
    except KeysMissing as error:
        console.print(f"[red]{error}[/red]")
        return 2
    codec = build_codec(kafka_schema_store(settings.bootstrap_servers), models=(MODEL,))
    console.rule("1. topics")
    created = ensure_deployment_topics(settings)
    console.print(f"topics ready ({len(created)} created now)")
    history = _lifecycle(settings, codec)
    if history.events:
        console.print(
            f"[red]the lifecycle log already holds {len(history.events)} events for {MODEL} "
            f"on {settings.bootstrap_servers}: the demo tells its story on an empty log. "
            "Run `make demo`, which gives the demo a fresh broker of its own.[/red]"
        )
        return 2

    console.rule("2. the five services")
    processes = _start_services(settings, console, plan)
    publisher = Publisher(settings, codec, client_id="modelbus-demo", signer=operator)
    lifecycle = TopicFollower(settings.bootstrap_servers, LIFECYCLE_TOPIC, codec)
    traffic = LiveTraffic(settings, codec, model=MODEL, rate_per_s=plan.rate_per_s, seed=101)
    try:
        return _story(settings, console, codec, publisher, lifecycle, traffic, plan, summary)
    except TimeoutError as error:
        console.print(f"[red]stopped: {error}[/red]")
        for process in processes:
            console.print(f"[dim]  {process.name} log: {process.log_file}[/dim]")
        return 1
    finally:
        traffic.stop()
        lifecycle.close()
        if not keep_running:
            for process in processes:
                process.stop()
            console.print("services stopped (`--keep-running` leaves them up)")


def _story(
    settings: KafkaSettings,
    console: Console,
    codec: Codec,
    publisher: Publisher,
    lifecycle: TopicFollower,
    traffic: LiveTraffic,
    plan: Plan,
    summary: Path | None,
) -> int:
    timeline = Timeline()
    watch = _Watcher(console, lifecycle, plan.timeout_s)

    console.rule("3. first model: the operator asks once; trainer, registry, deployer do the rest")
    ask = _request_training(publisher, "demo: first model for credit")
    console.print(f"-> TrainingRequested  {ask.reason}")
    first = watch.until(_registered_in(ask.meta.correlation_id), "ModelRegistered for v1")
    watch.until(_promoted(first.version), f"ModelPromoted for v{first.version}")
    watch.until(_loaded(first.version), f"ModelLoaded for v{first.version}")
    timeline.mark("first model promoted", f"v{first.version}")

    console.rule(f"4. live traffic: {plan.rate_per_s:.0f} requests/s, each labelled once answered")
    traffic.enter("before drift")
    traffic.start()
    _wait_answers(console, traffic, "before drift", plan.answers_before_drift, plan.timeout_s)
    before = traffic.tally.accuracy("before drift", first.version)
    console.print(f"v{first.version} accuracy on labelled traffic: [bold]{_pct(before)}[/bold]")
    timeline.mark("traffic under the old rule", f"accuracy {_pct(before)}")

    console.rule("5. the bank changes its approval rule (concept drift); nobody tells the system")
    switched_at = traffic.switch(classification_function=NEW_RULE, phase="after drift")
    drift = watch.until(
        lambda e: isinstance(e, t.DriftDetected) and e.meta.producer.startswith("monitor"),
        "DriftDetected from the monitor",
    )
    delay_s = drift.meta.occurred_at.timestamp() - switched_at
    timeline.mark("monitor: DriftDetected", f"{delay_s:.1f}s after the switch, {drift.kind}")
    second = watch.until(
        _registered_in(drift.meta.correlation_id), "ModelRegistered for the retrained version"
    )
    timeline.mark("trainer + registry: retrained", f"v{second.version}")
    after_drift = traffic.tally.accuracy("after drift", first.version)

    console.rule(f"6. canary: v{second.version} must beat v{first.version} on live traffic")
    watch.until(_decided(second.version), f"the deployer's decision on v{second.version}")
    story = Story.read(MODEL, watch.seen)
    if story.chapters[second.version].promoted is None:
        console.print(f"[red]v{second.version} was not promoted[/red]")
        return 1
    traffic.enter("after promotion")
    timeline.mark("deployer: promoted", f"v{second.version}")
    _wait_answers(console, traffic, "after promotion", plan.answers_after_promotion, plan.timeout_s)
    after = traffic.tally.accuracy("after promotion", second.version)

    console.rule("7. a deliberately bad model: labels flipped on one slice of the training data")
    bad_ask = _request_training(
        publisher, f"demo: a bad model (labels flipped where {BAD_SLICE})", corrupt=BAD_SLICE
    )
    console.print(f"-> TrainingRequested  {bad_ask.reason}")
    traffic.enter("bad canary")
    third = watch.until(_registered_in(bad_ask.meta.correlation_id), "ModelRegistered (bad)")
    watch.until(_decided(third.version), f"the deployer's decision on v{third.version}")
    timeline.mark("deployer: decided on the bad model", f"v{third.version}")
    traffic.enter("after rollback")
    _wait_answers(console, traffic, "after rollback", 500, plan.timeout_s)

    console.rule("8. what the log says")
    story = Story.read(MODEL, _lifecycle(settings, codec).events)
    problems = story.problems(first=first.version, retrained=second.version, bad=third.version)
    if traffic.duplicates:
        problems.append(f"{traffic.duplicates} requests were answered more than once")
    late = traffic.tally.count("after rollback", third.version)
    if late:
        problems.append(f"v{third.version} still answered {late} requests after its rollback")
    versions = (first, second, third)
    accuracy = (before, after_drift, after)
    _summary(console, timeline, traffic, story, versions, accuracy)
    if summary is not None:
        facts = _facts(story, traffic, switched_at, versions, accuracy, problems)
        summary.write_text(json.dumps(facts, indent=2))
    if problems:
        for problem in problems:
            console.print(f"[red]✗ {problem}[/red]")
        return 1
    console.print(
        "[green]✓ the whole story is on the log: drift → retrain → canary → promote, "
        "then a bad model rolled back; every request answered exactly once[/green]"
    )
    return 0


class _Watcher:
    """Waits for lifecycle events of the demo's model, printing each one as it lands."""

    def __init__(self, console: Console, lifecycle: TopicFollower, timeout_s: float) -> None:
        self.console = console
        self.lifecycle = lifecycle
        self.timeout_s = timeout_s
        self.seen: list[Any] = []

    def until(self, predicate: Any, what: str) -> Any:
        return self.lifecycle.wait_for(
            predicate, timeout_s=self.timeout_s, on_event=self._show, what=what
        )

    def _show(self, event: Any) -> None:
        if isinstance(event, GenericRecord) or getattr(event, "model", None) != MODEL:
            return
        self.seen.append(event)
        self.console.print(f"<- {one_line(event)}")


def _registered_in(correlation_id: str) -> Any:
    return lambda e: (
        (
            isinstance(e, t.ModelRegistered | t.TrainingFailed | t.RegistrationFailed)
            and e.model == MODEL
            and e.meta.correlation_id == correlation_id
        )
        and _raise_on_failure(e)
    )


def _raise_on_failure(event: Any) -> bool:
    if isinstance(event, t.TrainingFailed | t.RegistrationFailed):
        raise TimeoutError(f"the loop ended in {type(event).__name__}: {event.reason}")
    return True


def _promoted(version: int) -> Any:
    return lambda e: isinstance(e, t.ModelPromoted) and e.model == MODEL and e.version == version


def _decided(version: int) -> Any:
    return lambda e: (
        isinstance(e, t.ModelPromoted | t.ModelRolledBack)
        and e.model == MODEL
        and e.version == version
    )


def _loaded(version: int) -> Any:
    return lambda e: isinstance(e, t.ModelLoaded) and e.model == MODEL and e.version == version


def _request_training(
    publisher: Publisher, reason: str, *, corrupt: str | None = None
) -> t.TrainingRequested:
    request = t.TrainingRequested(
        meta=new_meta(producer_id("demo")),
        model=MODEL,
        reason=reason,
        requested_by="modelbus demo",
        corrupt_labels_where=corrupt,
    )
    publisher.publish(request)
    publisher.flush()
    return request


def _wait_answers(
    console: Console, traffic: LiveTraffic, phase: str, answers: int, timeout_s: float
) -> None:
    from rich.progress import Progress

    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"{answers} labelled answers ({phase})", total=answers)

        def enough() -> bool:
            progress.update(task, completed=traffic.tally.count(phase))
            return traffic.tally.count(phase) >= answers

        wait_until(enough, timeout_s=timeout_s, what=f"{answers} answers {phase}")


def _lifecycle(settings: KafkaSettings, codec: Codec) -> Story:
    events = read_events(settings.bootstrap_servers, LIFECYCLE_TOPIC, codec)
    return Story.read(MODEL, [e for e in events if not isinstance(e, GenericRecord)])


# Relative to the services' working directory, <run dir>/services (the services' default).
DEMO_TRACKING_URI = "sqlite:///.run/mlflow.db"


def _start_services(settings: KafkaSettings, console: Console, plan: Plan) -> list[ServiceProcess]:
    run_dir = Path(os.environ.get("MODELBUS_RUN_DIR", ".run")).resolve()
    token_file = run_dir / "registry.token"
    if not token_file.exists():
        run_dir.mkdir(parents=True, exist_ok=True)
        token_file.write_text(secrets.token_urlsafe(32))
        token_file.chmod(0o600)
    env = {
        **plan.env,
        "MODELBUS_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "MODELBUS_REGISTRY_API_TOKEN": token_file.read_text().strip(),
        "MODELBUS_TRAINER_REPO_DIR": str(Path.cwd()),
        # The demo's own MLflow store (under its run dir): an MLFLOW_TRACKING_URI in the
        # caller's environment must not send its models elsewhere.
        "MODELBUS_TRAINER_MLFLOW_TRACKING_URI": DEMO_TRACKING_URI,
        "MODELBUS_REGISTRY_MLFLOW_TRACKING_URI": DEMO_TRACKING_URI,
    }
    processes = []
    for name in SERVICES:
        process = ServiceProcess(
            name, ("-m", f"modelbus_{name}", "run"), run_dir, cwd=run_dir / "services"
        )
        pid = process.start(env)
        console.print(f"{name:10} pid {pid:<7} log {process.log_file}")
        processes.append(process)
    console.print(f"[dim]state of this demo under {run_dir}; registry token in {token_file}[/dim]")
    return processes


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _summary(
    console: Console,
    timeline: Timeline,
    traffic: LiveTraffic,
    story: Story,
    versions: tuple[t.ModelRegistered, t.ModelRegistered, t.ModelRegistered],
    accuracy: tuple[float | None, float | None, float | None],
) -> None:
    first, second, third = versions
    table = Table(title="the story, act by act")
    for column in ("act", "ended at", "detail"):
        table.add_column(column)
    for act, at, detail in timeline.marks:
        table.add_row(act, f"{at - timeline.started:7.1f}s", detail)
    console.print(table)
    rolled_back = story.chapters.get(third.version)
    reason = rolled_back.rolled_back.reason if rolled_back and rolled_back.rolled_back else "—"
    facts = Table(title="what the traffic saw", show_header=False)
    facts.add_row(f"accuracy of v{first.version} before drift", _pct(accuracy[0]))
    facts.add_row(f"accuracy of v{first.version} after drift", _pct(accuracy[1]))
    facts.add_row(f"accuracy of v{second.version} after its promotion", _pct(accuracy[2]))
    facts.add_row(
        f"requests v{third.version} answered before its rollback",
        str(traffic.tally.count("bad canary", third.version)),
    )
    facts.add_row(f"why v{third.version} was rolled back", reason)
    facts.add_row("requests sent / answered twice", f"{traffic.sent} / {traffic.duplicates}")
    console.print(facts)
    sys.stdout.flush()


def _facts(
    story: Story,
    traffic: LiveTraffic,
    switched_at: float,
    versions: tuple[t.ModelRegistered, t.ModelRegistered, t.ModelRegistered],
    accuracy: tuple[float | None, float | None, float | None],
    problems: list[str],
) -> dict[str, Any]:
    """The story's timings, read from the log's events, in seconds after the rule switch."""
    first, second, third = versions
    drift = story.monitor_drift()
    loop = story.correlated(drift.meta.correlation_id) if drift else []

    def after_switch(event: Any) -> float | None:
        return round(event.meta.occurred_at.timestamp() - switched_at, 2) if event else None

    def first_of(kind: type) -> Any:
        return next((e for e in loop if isinstance(e, kind)), None)

    chapter, bad = story.chapters.get(second.version), story.chapters.get(third.version)
    return {
        "story_ok": not problems,
        "problems": problems,
        "seconds_after_rule_switch": {
            "drift_detected": after_switch(drift),
            "model_trained": after_switch(first_of(t.ModelTrained)),
            "model_registered": after_switch(first_of(t.ModelRegistered)),
            "model_promoted": after_switch(chapter.promoted if chapter else None),
        },
        "estimated_onset_after_switch_s": round(drift.onset_at.timestamp() - switched_at, 2)
        if drift and drift.onset_at
        else None,
        "drift_kind": drift.kind if drift else None,
        "accuracy": {
            f"v{first.version}_before_drift": accuracy[0],
            f"v{first.version}_after_drift": accuracy[1],
            f"v{second.version}_after_promotion": accuracy[2],
        },
        "bad_version_answers_before_rollback": traffic.tally.count("bad canary", third.version),
        "bad_version_rollback_reason": bad.rolled_back.reason if bad and bad.rolled_back else None,
        "requests_sent": traffic.sent,
        "requests_answered_twice": traffic.duplicates,
        "rate_per_s": traffic.rate_per_s,
    }

"""``modelbus demo``: the loop on generated data, printing only what happened on the bus.

Stages: topics; every event type through the broker; registry, trainer and inference as
background processes; a first model trained, registered and loaded; live traffic scored;
concept drift injected with labelled feedback; a retrained version registered and served; the
lifecycle log audited. The monitor (drift detection) and deployer (canary) services are not
built yet, so the demo asks for the retraining itself and says so.
"""

from __future__ import annotations

import os
import secrets
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress

from modelbus.audit import audit
from modelbus.bus import LIFECYCLE_TOPIC, Publisher, data_topic, ensure_topics, topic_specs
from modelbus.bus.reading import read_topic
from modelbus.bus.schema_topic import kafka_schema_store
from modelbus.cli.follow import TopicFollower
from modelbus.cli.processes import ServiceProcess
from modelbus.cli.selfcheck import run_selfcheck
from modelbus.config import KafkaSettings
from modelbus.events import Codec, GenericRecord, build_codec, new_meta
from modelbus.events import types as t
from modelbus.events.meta import now_utc, producer_id

MODEL = "credit"
DEMO_SERVICES = ("registry", "trainer", "inference")
TRAINING_TIMEOUT_S = 600.0
# The demo trains on a small reference set so that, after drift, recent labelled traffic is
# most of the retraining snapshot.
DEMO_ENV = {
    "MODELBUS_TRAINER_REFERENCE_ROWS": "3000",
    "MODELBUS_TRAINER_EPOCHS": "40",
    "MODELBUS_TRAINER_BATCH_SIZE": "64",
}


def run_demo(settings: KafkaSettings, console: Console, *, keep_running: bool = False) -> int:
    """Run every stage; returns the process exit code."""
    console.rule("1. topics")
    specs = topic_specs(
        settings.models,
        data_partitions=settings.data_partitions,
        retention_ms=settings.data_retention_ms,
    )
    created = ensure_topics(settings.bootstrap_servers, specs)
    console.print(f"{len(specs)} topics ready ({len(created)} created now)")

    console.rule("2. every event type through the broker")
    if not run_selfcheck(settings, console):
        return 1

    console.rule("3. services")
    processes = _start_services(settings, console)
    codec = build_codec(kafka_schema_store(settings.bootstrap_servers), models=(MODEL,))
    publisher = Publisher(settings, codec, client_id="modelbus-demo")
    try:
        return _loop(settings, console, codec, publisher)
    except TimeoutError as error:
        console.print(f"[red]stopped: {error}[/red]")
        for process in processes:
            console.print(f"[dim]  {process.name} log: {process.log_file}[/dim]")
        return 1
    finally:
        if not keep_running:
            for process in processes:
                process.stop()
            console.print("services stopped (run `modelbus up` to keep them running)")


def _loop(settings: KafkaSettings, console: Console, codec: Codec, publisher: Publisher) -> int:
    from modelbus.data import generate_credit

    lifecycle = TopicFollower(settings.bootstrap_servers, LIFECYCLE_TOPIC, codec)

    console.rule("4. first model: TrainingRequested -> trainer -> registry -> inference")
    first = _train(console, lifecycle, publisher, reason="demo: first model for credit")

    console.rule(f"5. live traffic scored by v{first.version}")
    rows, labels = generate_credit(2000, seed=101)
    before = _score(settings, console, codec, publisher, rows, labels, feedback=True)

    console.rule("6. concept drift: the bank changes its approval rule")
    drift_rows, drift_labels = generate_credit(6000, seed=202, classification_function=4)
    drifted = _score(settings, console, codec, publisher, drift_rows, drift_labels, feedback=True)
    console.print(
        f"accuracy on labelled feedback fell from [bold]{before:.1%}[/bold] to "
        f"[bold red]{drifted:.1%}[/bold red]"
    )
    console.print(
        "[yellow]the monitor service (River detectors -> DriftDetected) is not built yet, so "
        "the demo asks for retraining itself[/yellow]"
    )

    console.rule("7. retraining on recent labelled traffic")
    second = _train(
        console,
        lifecycle,
        publisher,
        reason=f"demo: accuracy fell from {before:.1%} to {drifted:.1%} on labelled feedback",
    )
    console.print(f"v{second.version} registered with parent v{second.parent_version}")
    fresh_rows, fresh_labels = generate_credit(2000, seed=303, classification_function=4)
    after = _score(settings, console, codec, publisher, fresh_rows, fresh_labels, feedback=True)
    console.print(
        f"accuracy on the new rule: v{first.version} {drifted:.1%} -> "
        f"v{second.version} [bold green]{after:.1%}[/bold green]"
    )
    console.print(
        "[yellow]the deployer service (canary 5% -> 100%) is not built yet: inference serves "
        "the latest registered version[/yellow]"
    )
    lifecycle.close()

    console.rule("8. audit of the lifecycle log")
    return _audit(settings, console, codec)


def _start_services(settings: KafkaSettings, console: Console) -> list[ServiceProcess]:
    run_dir = Path(os.environ.get("MODELBUS_RUN_DIR", ".run"))
    token_file = run_dir / "registry.token"
    if not token_file.exists():
        run_dir.mkdir(parents=True, exist_ok=True)
        token_file.write_text(secrets.token_urlsafe(32))
        token_file.chmod(0o600)
    env = {
        **DEMO_ENV,
        "MODELBUS_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "MODELBUS_REGISTRY_API_TOKEN": token_file.read_text().strip(),
    }
    processes = []
    for name in DEMO_SERVICES:
        process = ServiceProcess(name, ("-m", f"modelbus_{name}", "run"), run_dir)
        pid = process.start(env)
        console.print(f"{name:10} pid {pid:<7} log {process.log_file}")
        processes.append(process)
    console.print(f"[dim]registry API token in {token_file}[/dim]")
    return processes


def _train(
    console: Console, lifecycle: TopicFollower, publisher: Publisher, *, reason: str
) -> t.ModelRegistered:
    request = t.TrainingRequested(
        meta=new_meta(producer_id("demo")),
        model=MODEL,
        reason=reason,
        requested_by="modelbus demo",
    )
    publisher.publish(request)
    publisher.flush()
    console.print(f"-> TrainingRequested  {reason}")
    loop_id = request.meta.correlation_id

    def show(event: Any) -> None:
        if isinstance(event, GenericRecord) or getattr(event, "model", None) != MODEL:
            return
        if event.meta.correlation_id == loop_id or isinstance(
            event, t.ModelLoaded | t.ModelLoadFailed
        ):
            console.print(f"<- {_line(event)}")

    def answered(event: Any) -> bool:
        return (
            isinstance(event, t.ModelRegistered | t.TrainingFailed | t.RegistrationFailed)
            and event.meta.correlation_id == loop_id
        )

    outcome = lifecycle.wait_for(
        answered, timeout_s=TRAINING_TIMEOUT_S, on_event=show, what="ModelRegistered"
    )
    if not isinstance(outcome, t.ModelRegistered):
        raise TimeoutError(f"the loop ended in {type(outcome).__name__}: {outcome.reason}")
    lifecycle.wait_for(
        lambda event: isinstance(event, t.ModelLoaded) and event.version == outcome.version,
        timeout_s=120,
        on_event=show,
        what=f"ModelLoaded for v{outcome.version}",
    )
    return outcome


def _line(event: Any) -> str:
    name = type(event).__name__
    if isinstance(event, t.TrainingStarted):
        return f"{name:18} job {event.job_id}"
    if isinstance(event, t.ModelTrained):
        metrics = ", ".join(
            f"{k}={v:.3f}" for k, v in sorted(event.metrics.items()) if "rows" not in k
        )
        return f"{name:18} run {event.run_id[:8]} on {event.data.rows} rows ({metrics})"
    if isinstance(event, t.ModelRegistered):
        return f"{name:18} v{event.version} (parent {event.parent_version})"
    if isinstance(event, t.ModelLoaded):
        check = f"{event.environment_check}, {event.load_ms:.0f} ms"
        return f"{name:18} v{event.version} by {event.worker} ({check})"
    if isinstance(event, t.ModelLoadFailed | t.TrainingFailed | t.RegistrationFailed):
        return f"[red]{name:18} {event.reason}[/red]"
    return name


def _score(
    settings: KafkaSettings,
    console: Console,
    codec: Codec,
    publisher: Publisher,
    rows: list[dict[str, Any]],
    labels: list[int],
    *,
    feedback: bool,
) -> float:
    """Send ``rows`` as requests, wait for every result, send feedback; returns accuracy."""
    results_follower = TopicFollower(
        settings.bootstrap_servers, data_topic(MODEL, "predictions"), codec
    )
    batch = uuid.uuid4().hex[:8]
    truth = {f"{batch}-{index}": label for index, label in enumerate(labels)}
    schema = f"modelbus.models.{MODEL}.PredictionRequest"
    for request_id, row in zip(truth, rows, strict=True):
        publisher.publish(
            t.PredictionRequest(
                meta=new_meta("demo-producer"),
                request_id=request_id,
                model=MODEL,
                sent_at=now_utc(),
                features=row,
            ),
            schema_name=schema,
        )
    publisher.flush()
    results: dict[str, t.PredictionResult] = {}
    deadline = time.monotonic() + 180
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"{len(truth)} requests -> results", total=len(truth))
        while len(results) < len(truth):
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {len(results)}/{len(truth)} results within 180s")
            for event in results_follower.poll():
                if isinstance(event, t.PredictionResult) and event.request_id in truth:
                    results[event.request_id] = event
            progress.update(task, completed=len(results))
    results_follower.close()
    if feedback:
        for request_id, label in truth.items():
            publisher.publish(
                t.Feedback(
                    meta=new_meta("demo-labeller"),
                    request_id=request_id,
                    model=MODEL,
                    label=label,
                    observed_at=now_utc(),
                )
            )
        publisher.flush()
    correct = sum(result.label == truth[request_id] for request_id, result in results.items())
    latencies = [result.timings.total_ms for result in results.values()]
    versions = sorted({result.version for result in results.values()})
    accuracy = correct / len(truth)
    console.print(
        f"{len(results)} results from version(s) {versions}: accuracy {accuracy:.1%}, "
        f"latency p50 {statistics.median(latencies):.1f} ms, "
        f"p99 {statistics.quantiles(latencies, n=100)[98]:.1f} ms"
        + (f"; {len(truth)} Feedback labels sent" if feedback else "")
    )
    return accuracy


def _audit(settings: KafkaSettings, console: Console, codec: Codec) -> int:
    events = []
    for envelope in read_topic(settings.bootstrap_servers, LIFECYCLE_TOPIC):
        event = codec.decode(envelope.value or b"", where=envelope.where)
        if not isinstance(event, GenericRecord) and getattr(event, "model", None) == MODEL:
            events.append(event)
    report = audit(events)
    console.print(
        f"{len(events)} lifecycle events for {MODEL}, {len(report.chains)} loops, "
        f"versions {report.versions.get(MODEL, [])}"
    )
    if report.ok:
        console.print("[green]log consistent: unique ids, every cause precedes its effect[/green]")
        return 0
    for problem in report.problems:
        console.print(f"[red]{problem}[/red]")
    return 1

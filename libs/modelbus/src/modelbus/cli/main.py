"""``modelbus``: topics, event tailing, audits and the demo, from one command."""

from __future__ import annotations

import getpass
import json
import os
import uuid
from pathlib import Path
from typing import Annotated, Any

import typer
from confluent_kafka import KafkaException
from rich.console import Console
from rich.table import Table

from modelbus.bus import LIFECYCLE_TOPIC, Publisher, ensure_topics, topic_specs
from modelbus.bus.reading import read_topic
from modelbus.cli.acls import acls_app
from modelbus.cli.audits import audit_app, replay
from modelbus.cli.context import cli_codec, cli_settings, lifecycle_events
from modelbus.cli.keys import keys_app
from modelbus.cli.processes import ServiceProcess
from modelbus.events import CodecError, GenericRecord, new_meta
from modelbus.events import types as t
from modelbus.events.meta import producer_id
from modelbus.trust import KeysMissing, load_signer, load_trusted

app = typer.Typer(
    help="modelbus: models from training to production, through Avro events on Kafka. "
    "Broker address from MODELBUS_BOOTSTRAP_SERVERS (default 127.0.0.1:19092).",
    no_args_is_help=True,
)
topics_app = typer.Typer(help="Create and list modelbus topics.", no_args_is_help=True)
events_app = typer.Typer(help="Read events off the bus.", no_args_is_help=True)
app.add_typer(topics_app, name="topics")
app.add_typer(events_app, name="events")
app.add_typer(audit_app, name="audit")
app.add_typer(acls_app, name="acls")
app.add_typer(keys_app, name="keys")
app.command("replay")(replay)
console = Console()

SERVICES = ("registry", "trainer", "inference", "monitor", "deployer")
"""The five services, each started as ``python -m modelbus_<name> run``."""


@topics_app.command("create")
def topics_create(
    partitions: Annotated[
        int | None, typer.Option(help="Partitions per data topic (default: settings).")
    ] = None,
) -> None:
    """Create every topic with its retention, cleanup policy and durability (existing ones are
    kept); refuses a replication factor larger than the cluster."""
    from modelbus.bus.connection_check import BrokerUnreachable, check_connection
    from modelbus.bus.topics import DurabilityError, describe_topics

    settings = cli_settings()
    try:
        check_connection(settings.bootstrap_servers)  # a refused TLS or login, said plainly
    except BrokerUnreachable as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(1) from error
    specs = topic_specs(
        settings.models,
        data_partitions=partitions or settings.data_partitions,
        retention_ms=settings.data_retention_ms,
    )
    try:
        created = ensure_topics(
            settings.bootstrap_servers,
            specs,
            replication_factor=settings.replication_factor,
            min_insync_replicas=settings.min_insync_replicas,
        )
    except DurabilityError as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(2) from error
    # Producers may not write modelbus.schemas when security is on: the schemas of every
    # event and of the models' contracts are published here, by whoever creates the topics.
    schemas = Publisher(settings, cli_codec(settings), client_id="modelbus-topics")
    schemas.publish_all_schemas()
    described = describe_topics(settings.bootstrap_servers, [spec.name for spec in specs])
    for spec in specs:
        state = "created" if spec.name in created else "exists"
        count, replicas, min_isr = described.get(spec.name, (spec.partitions, 0, 0))
        console.print(
            f"{state:8} {spec.name}  partitions={count} replicas={replicas} "
            f"min.insync.replicas={min_isr} {spec.config}"
        )


def describe(event: Any) -> str:
    """One line for a person: type, model, and the fields that matter."""
    if isinstance(event, GenericRecord):
        return f"{event.schema_name} {json.dumps(event.fields, default=str)[:200]}"
    fields = event.to_avro()
    fields.pop("meta", None)
    summary = ", ".join(
        f"{name}={value}" for name, value in fields.items() if not isinstance(value, bytes)
    )
    return f"{type(event).__name__}: {summary}"[:240]


@events_app.command("tail")
def events_tail(
    topic: Annotated[str, typer.Option(help="Topic to read.")] = LIFECYCLE_TOPIC,
    from_beginning: Annotated[
        bool, typer.Option("--from-beginning/--new", help="Replay the log, or only new events.")
    ] = True,
    follow: Annotated[bool, typer.Option(help="Keep waiting for new events.")] = False,
    model: Annotated[str | None, typer.Option(help="Only this model's events.")] = None,
    event_type: Annotated[
        list[str] | None,
        typer.Option("--type", help="Only events of this type (repeatable), e.g. DriftDetected."),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(help="Only events from this time on: ISO 8601, or an age like 15m, 2h, 1d."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """Print decoded events (any schema ever published decodes, even one unknown in code)."""
    from modelbus.cli.render import one_line
    from modelbus.cli.tail import EventFilter, as_json_line

    settings = cli_settings()
    codec = cli_codec(settings)
    try:
        wanted = EventFilter.of(model=model, types=event_type or [], since=since)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from error
    for envelope in read_topic(
        settings.bootstrap_servers, topic, from_beginning=from_beginning, follow=follow
    ):
        try:
            event = codec.decode(envelope.value or b"", where=envelope.where)
        except CodecError as error:
            console.print(f"[red]{envelope.where} undecodable: {error.cause}[/red]")
            continue
        if not wanted.accepts(event):
            continue
        if as_json:
            print(as_json_line(envelope.where, event), flush=True)
            continue
        when = getattr(getattr(event, "meta", None), "occurred_at", "")
        console.print(f"[dim]{envelope.where} {when}[/dim] {one_line(event)}")


@app.command("selfcheck")
def selfcheck() -> None:
    """Round-trip an example of every event type through the broker and print each one."""
    from modelbus.cli.selfcheck import run_selfcheck

    ok = run_selfcheck(cli_settings(), console)
    if not ok:
        raise typer.Exit(1)


def _publish_request(event: Any) -> None:
    settings = cli_settings()
    try:
        signer = load_signer("operator")  # a person's decision: signed as the operator
    except KeysMissing as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(2) from error
    publisher = Publisher(settings, cli_codec(settings), client_id="modelbus-cli", signer=signer)
    publisher.publish(event)
    publisher.flush()
    console.print(f"published {describe(event)}")
    console.print(f"[dim]event_id {event.meta.event_id}: follow with `modelbus events tail`[/dim]")


def _operator() -> str:
    return f"{getpass.getuser()}@cli"


@app.command("train")
def train(
    model: Annotated[str, typer.Argument(help="Model to train, e.g. credit.")],
    reason: Annotated[str, typer.Option(help="Why, for the audit log.")] = "requested from CLI",
    seed: Annotated[
        int | None, typer.Option(help="Training seed (trainer default if unset).")
    ] = None,
) -> None:
    """Ask the trainer for a new version (publishes TrainingRequested)."""
    _publish_request(
        t.TrainingRequested(
            meta=new_meta(producer_id("cli")),
            model=model,
            reason=reason,
            requested_by=_operator(),
            seed=seed,
        )
    )


WaitOption = Annotated[
    float,
    typer.Option(help="Seconds to wait for the deployer's decision (0: publish and return)."),
]


def _lifecycle_models() -> dict[str, Any]:
    from modelbus.cli.rollouts import fold_models

    settings = cli_settings()
    return fold_models(lifecycle_events(settings, cli_codec(settings), console))


def _request_decision(event: Any, wait_s: float) -> None:
    """Publish an operator request and wait for the deployer's decision caused by it."""
    from modelbus.cli.follow import TopicFollower
    from modelbus.cli.rollouts import describe_decision

    settings = cli_settings()
    follower = (
        TopicFollower(settings.bootstrap_servers, LIFECYCLE_TOPIC, cli_codec(settings))
        if wait_s > 0
        else None
    )
    _publish_request(event)
    if follower is None:
        return
    request_id = event.meta.event_id
    try:
        follower.wait_for(
            lambda e: (
                isinstance(e, t.ModelPromoted | t.ModelRolledBack)
                and e.meta.causation_id == request_id
            ),
            timeout_s=wait_s,
            on_event=lambda e: (
                console.print(f"decided: {describe_decision(e)}")
                if getattr(e.meta, "causation_id", None) == request_id
                else None
            ),
            what="the deployer's decision",
        )
    except TimeoutError as error:
        console.print(f"[red]no decision within {wait_s:g}s: is the deployer running?[/red]")
        raise typer.Exit(1) from error
    finally:
        follower.close()


@app.command("rollback")
def rollback(
    model: Annotated[str, typer.Argument(help="Model to roll back.")],
    to_version: Annotated[
        int | None,
        typer.Option(help="Version to serve (default: the rollout's or previous champion)."),
    ] = None,
    reason: Annotated[str, typer.Option(help="Why, for the audit log.")] = "requested from CLI",
    wait_s: WaitOption = 10.0,
) -> None:
    """Ask the deployer to roll back now (publishes RollbackRequested, waits for its decision).

    Refused before publishing when the log shows nothing to roll back to.
    """
    from modelbus.cli.rollouts import rollback_refusal

    refusal = rollback_refusal(_lifecycle_models(), model, to_version)
    if refusal is not None:
        console.print(f"[red]refused: {refusal}[/red]")
        raise typer.Exit(2)
    _request_decision(
        t.RollbackRequested(
            meta=new_meta(producer_id("cli")),
            model=model,
            to_version=to_version,
            requested_by=_operator(),
            reason=reason,
        ),
        wait_s,
    )


@app.command("promote")
def promote(
    model: Annotated[str, typer.Argument(help="Model.")],
    version: Annotated[int, typer.Argument(help="Version to make champion.")],
    reason: Annotated[str, typer.Option(help="Why, for the audit log.")] = "requested from CLI",
    wait_s: WaitOption = 10.0,
) -> None:
    """Ask the deployer to promote a version now (publishes PromotionRequested, waits for it).

    Refused before publishing when the version is not registered or already champion.
    """
    from modelbus.cli.rollouts import promotion_refusal

    refusal = promotion_refusal(_lifecycle_models(), model, version)
    if refusal is not None:
        console.print(f"[red]refused: {refusal}[/red]")
        raise typer.Exit(2)
    _request_decision(
        t.PromotionRequested(
            meta=new_meta(producer_id("cli")),
            model=model,
            version=version,
            requested_by=_operator(),
            reason=reason,
        ),
        wait_s,
    )


rollout_app = typer.Typer(help="Canary rollouts as the lifecycle log tells them.")
app.add_typer(rollout_app, name="rollout")


@rollout_app.command("status")
def rollout_status(
    model: Annotated[str, typer.Argument(help="Model.")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
) -> None:
    """Champion, routes, the rollout under way (step, share, latest verdict and guardrails)."""
    view = _lifecycle_models().get(model)
    if view is None:
        console.print(f"[red]model {model!r} is not in the lifecycle log[/red]")
        raise typer.Exit(1)
    rollout = view.rollout
    last = rollout.evaluations[-1] if rollout and rollout.evaluations else None
    summary = {
        "model": model,
        "champion": view.champion,
        "registered": view.registered,
        "routes": [[r.variant, r.version, r.weight_pct] for r in view.routes],
        "last_outcome": view.last_outcome or None,
        "rollout": None
        if rollout is None
        else {
            "rollout_id": rollout.rollout_id,
            "candidate": rollout.candidate,
            "champion": rollout.champion,
            "steps_pct": rollout.steps_pct,
            "share_pct": rollout.share_pct,
            "started_at": str(rollout.started_at),
            "evaluations": len(rollout.evaluations),
            "latest": None
            if last is None
            else {
                "step_pct": last.step_pct,
                "verdict": last.verdict,
                "reasons": list(last.reasons),
                "guardrails": [
                    {"name": g.name, "verdict": g.verdict, "detail": g.detail}
                    for g in last.guardrails
                ],
            },
        },
    }
    if as_json:
        print(json.dumps(summary))
        return
    routes = ", ".join(f"v{r.version} {r.variant} {r.weight_pct:g}%" for r in view.routes)
    console.print(f"{model}: champion v{view.champion}, routes {routes or '-'}")
    if view.last_outcome:
        console.print(f"last outcome: {view.last_outcome}")
    if rollout is None:
        console.print("no rollout under way")
        return
    steps = " -> ".join(f"{p:g}%" for p in rollout.steps_pct)
    console.print(
        f"rollout of v{rollout.candidate} against v{rollout.champion} since "
        f"{rollout.started_at}: at {rollout.share_pct:g}% of steps {steps}"
    )
    if last is None:
        console.print("no verdict yet")
        return
    console.print(
        f"latest verdict at {last.step_pct:g}%: {last.verdict} ({'; '.join(last.reasons)})"
    )
    table = Table()
    for column in ("guardrail", "verdict", "detail"):
        table.add_column(column)
    for guardrail in last.guardrails:
        table.add_row(guardrail.name, guardrail.verdict, guardrail.detail)
    console.print(table)


@app.command("predict")
def predict(
    model: Annotated[str, typer.Argument(help="Model to ask, e.g. credit.")],
    features: Annotated[
        str, typer.Argument(help='Features as JSON, e.g. \'{"salary": 61250.0, "age": 42, ...}\'.')
    ],
    timeout_s: Annotated[float, typer.Option(help="How long to wait for the result.")] = 30.0,
    contract: Annotated[
        str | None,
        typer.Option(help="Data contract the model's requests follow (default: its name)."),
    ] = None,
) -> None:
    """Send one PredictionRequest through the bus and print its PredictionResult."""
    from modelbus.bus import data_topic
    from modelbus.cli.follow import TopicFollower
    from modelbus.events import EncodeError
    from modelbus.events.meta import now_utc

    try:
        row = json.loads(features)
    except json.JSONDecodeError as error:
        raise typer.BadParameter(f"features are not JSON: {error}") from error
    settings = cli_settings()
    codec = cli_codec(settings)
    request = t.PredictionRequest(
        meta=new_meta(producer_id("cli")),
        request_id=f"cli-{uuid.uuid4()}",
        model=model,
        sent_at=now_utc(),
        features=row,
    )
    follower = TopicFollower(settings.bootstrap_servers, data_topic(model, "predictions"), codec)
    publisher = Publisher(settings, codec, client_id="modelbus-cli")
    try:
        publisher.publish(
            request, schema_name=f"modelbus.models.{contract or model}.PredictionRequest"
        )
    except EncodeError as error:
        raise typer.BadParameter(
            f"features break the {contract or model} data contract: {error}"
        ) from error
    publisher.flush()
    try:
        result = follower.wait_for(
            lambda e: isinstance(e, t.PredictionResult) and e.request_id == request.request_id,
            timeout_s=timeout_s,
            what=f"PredictionResult for {request.request_id} (is inference running?)",
        )
    except TimeoutError as error:
        console.print(f"[red]{error}; bad requests land in {data_topic(model, 'dlq')}[/red]")
        raise typer.Exit(1) from error
    finally:
        follower.close()
    console.print(describe(result))


def _service_processes() -> list[ServiceProcess]:
    run_dir = Path(os.environ.get("MODELBUS_RUN_DIR", ".run"))
    return [ServiceProcess(name, ("-m", f"modelbus_{name}", "run"), run_dir) for name in SERVICES]


@app.command("up")
def up() -> None:
    """Create the topics and start every built service in the background (logs in .run/logs)."""
    try:  # the services would each refuse to start without keys: say so once, here
        roles = ("registry", "trainer", "deployer", "monitor", "inference")
        for role in roles:
            load_signer(role)
        load_trusted(required=roles)
    except KeysMissing as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(2) from error
    topics_create(partitions=None)
    for process in _service_processes():
        pid = process.start()
        console.print(f"{process.name:10} pid {pid}  log {process.log_file}")


@app.command("down")
def down() -> None:
    """Stop every service `modelbus up` started."""
    for process in _service_processes():
        state = "stopped" if process.stop() else "was not running"
        console.print(f"{process.name:10} {state}")


@app.command("status")
def status() -> None:
    """Which services run, what each model serves (champion, candidate, weights, latest
    verdict) and how many messages each consumer group is behind."""
    from modelbus.cli.status import consumer_lag, fold_serving

    for process in _service_processes():
        pid = process.pid()
        console.print(f"{process.name:10} " + (f"running, pid {pid}" if pid else "not running"))
    settings = cli_settings()
    codec = cli_codec(settings)
    events = lifecycle_events(settings, codec, console)
    try:
        lag = consumer_lag(settings.bootstrap_servers)
    except (LookupError, TimeoutError, KafkaException) as error:
        console.print(
            f"[red]the broker at {settings.bootstrap_servers} did not answer: {error}[/red]"
        )
        raise typer.Exit(1) from error
    table = Table(title="models")
    for column in ("model", "champion", "candidate", "routes", "latest verdict", "registered"):
        table.add_column(column)
    for state in fold_serving(events).values():
        routes = ", ".join(f"v{r.version} {r.variant} {r.weight_pct:g}%" for r in state.routes)
        table.add_row(
            state.model,
            f"v{state.champion}" if state.champion else "-",
            f"v{state.candidate}" if state.candidate else "-",
            routes or "-",
            state.last_verdict or "-",
            ", ".join(f"v{v}" for v in state.registered),
        )
    console.print(table)
    lags = Table(title="consumer lag (messages behind, committed offsets)")
    lags.add_column("group")
    lags.add_column("lag", justify="right")
    for group, behind in lag.items():
        lags.add_row(group, str(behind))
    console.print(lags)


@app.command("demo")
def demo(
    fast: Annotated[
        bool, typer.Option(help="Shorter acts and training (the e2e test uses it).")
    ] = False,
    keep_running: Annotated[
        bool, typer.Option(help="Leave the services running afterwards (`modelbus down`).")
    ] = False,
    summary: Annotated[
        Path | None, typer.Option(help="Write the story's timings and figures here as JSON.")
    ] = None,
) -> None:
    """The whole loop on generated data, run by the five services on an empty log.

    First model → live labelled traffic → the approval rule changes → the monitor's
    DriftDetected → retraining → canary → promotion; then a deliberately bad model → canary →
    rollback. Exits 0 only if the lifecycle log, read back at the end, tells that story.
    `make demo` runs it on a fresh broker of its own.
    """
    from modelbus.cli.demo import run_demo

    code = run_demo(cli_settings(), console, fast=fast, keep_running=keep_running, summary=summary)
    raise typer.Exit(code)


__all__ = ["Publisher", "app"]

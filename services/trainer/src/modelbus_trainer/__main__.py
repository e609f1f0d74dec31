"""``python -m modelbus_trainer``: the training service."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich import print_json

from modelbus.events import new_meta
from modelbus.events import types as t
from modelbus.service import refuse_misconfigured_broker, stop_on_signals
from modelbus.telemetry import configure_logging
from modelbus_trainer.config import Settings

app = typer.Typer(
    help="modelbus trainer: consumes TrainingRequested and DriftDetected from modelbus.lifecycle "
    "(one job per drift episode: cool-down and de-duplication per model), builds a "
    "content-addressed snapshot (reference data + recent requests joined with Feedback, read "
    "by offsets), trains a seeded PyTorch MLP in a worker process, logs the run and the model "
    "package to MLflow, and emits TrainingStarted then ModelTrained or TrainingFailed. "
    "Settings come from MODELBUS_TRAINER_* variables (see `settings`).",
    no_args_is_help=True,
)


@app.command()
def run(
    log_level: Annotated[str, typer.Option(help="Log level.")] = "INFO",
) -> None:
    """Topics, lifecycle replay (failing interrupted jobs), then live until SIGINT/SIGTERM.

    A running job finishes and is reported before the service stops.
    """
    from modelbus.bus.topics import ensure_deployment_topics
    from modelbus_trainer.bootstrap import bootstrap

    configure_logging("trainer", level=log_level)
    settings = Settings()
    kafka = settings.kafka
    refuse_misconfigured_broker("trainer", kafka.bootstrap_servers)
    ensure_deployment_topics(kafka)
    trainer = bootstrap(settings)
    stop = stop_on_signals()
    trainer.catch_up()
    trainer.run(stop)


@app.command()
def train(
    model: Annotated[str, typer.Option(help="Model to train.")] = "credit",
    seed: Annotated[int | None, typer.Option(help="Seed (default: settings).")] = None,
    max_rows: Annotated[int | None, typer.Option(help="Snapshot row cap.")] = None,
    production: Annotated[
        bool, typer.Option(help="Also read labelled requests from Kafka.")
    ] = False,
) -> None:
    """Train once in this process, without the lifecycle topic; prints the outcome as JSON."""
    from modelbus_trainer.bootstrap import JobPlanner
    from modelbus_trainer.job import run_job

    configure_logging("trainer")
    request = t.TrainingRequested(
        meta=new_meta("trainer-cli"),
        model=model,
        reason="trainer CLI",
        requested_by="cli",
        seed=seed,
        max_rows=max_rows,
    )
    spec = JobPlanner(Settings(), read_production=production)(request, None)
    outcome = run_job(spec)
    print_json(json.dumps(asdict(outcome), default=str))
    raise typer.Exit(0 if outcome.ok else 1)


@app.command()
def retrain_snapshot(
    snapshot: Annotated[Path, typer.Argument(help="A stored snapshot, .run/snapshots/<sha>.jsonl")],
    model: Annotated[str, typer.Option(help="Model whose contract the rows follow.")] = "credit",
    seed: Annotated[int | None, typer.Option(help="Seed (default: settings).")] = None,
) -> None:
    """Train again on a stored snapshot; prints the weights sha256 (same seed -> same hash)."""
    import hashlib

    from modelbus_trainer.bootstrap import train_params
    from modelbus_trainer.job import load_contract
    from modelbus_trainer.snapshot import load_snapshot
    from modelbus_trainer.training import fit_model

    settings = Settings()
    rows, labels, sha256 = load_snapshot(snapshot)
    fit = fit_model(
        rows, labels, load_contract(model), train_params(settings),
        seed=settings.seed if seed is None else seed,
    )  # fmt: skip
    weights = fit.trained.weights()
    digest = hashlib.sha256()
    for name in sorted(weights):
        digest.update(name.encode() + weights[name].tobytes())
    print_json(
        json.dumps({"snapshot_sha256": sha256, "weights_digest": digest.hexdigest(), **fit.metrics})
    )


@app.command()
def settings() -> None:
    """Print the effective settings (defaults overridden by MODELBUS_TRAINER_* variables)."""
    print_json(Settings().model_dump_json())


if __name__ == "__main__":
    app()

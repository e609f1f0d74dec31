"""``python -m modelbus_inference``: the inference service."""

from __future__ import annotations

from typing import Annotated

import typer
from rich import print_json

from modelbus.service import refuse_misconfigured_broker
from modelbus_inference.config import Settings

app = typer.Typer(
    help="modelbus inference: reads PredictionRequests from modelbus.<model>.requests, "
    "validates them against the model's data contract, micro-batches them through the model "
    "the canary routing picks, and writes PredictionResults to modelbus.<model>.predictions "
    "in one Kafka transaction with the consumed offsets (exactly once). Bad requests go to "
    "modelbus.<model>.dlq with the reason. Follows ModelRegistered/TrafficShifted on "
    "modelbus.lifecycle to verify, load and hot-swap model packages. Serves "
    "POST /v1/models/<model>/predict and /metrics over HTTP. Settings come from "
    "MODELBUS_INFERENCE_* variables (see `settings`).",
    no_args_is_help=True,
)


@app.command()
def run(
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="Worker processes sharing the model's consumer group (at most the number "
            "of partitions do work); dead ones are restarted.",
        ),
    ] = 1,
    model: Annotated[
        str | None, typer.Option(help="Model to serve (MODELBUS_INFERENCE_MODEL).")
    ] = None,
    worker_index: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Slot of a single worker; a restarted worker with the same slot fences its "
            "dead predecessor at once. Ignored with --workers > 1.",
        ),
    ] = None,
) -> None:
    """Serve one model: the Kafka stream, the HTTP API and metrics."""
    from modelbus_inference.workers import run_worker, supervise

    overrides: dict[str, object] = {}
    if model is not None:
        overrides["model"] = model
    if worker_index is not None:
        overrides["worker_index"] = worker_index
    settings = Settings(**overrides)  # type: ignore[arg-type]
    refuse_misconfigured_broker("inference", settings.kafka.bootstrap_servers)
    if workers == 1:
        run_worker(settings)
    else:
        supervise(settings, workers)


@app.command()
def settings() -> None:
    """Print the effective settings (defaults overridden by MODELBUS_INFERENCE_* variables)."""
    print_json(Settings().model_dump_json())


if __name__ == "__main__":
    app()

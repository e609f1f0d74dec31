"""``python -m modelbus_registry``: the model registry service."""

from __future__ import annotations

import asyncio
import json

import typer
from pydantic import ValidationError

from modelbus.service import refuse_misconfigured_broker
from modelbus.telemetry import configure_logging
from modelbus_registry.config import Settings

app = typer.Typer(
    help="modelbus registry: consumes ModelTrained from modelbus.lifecycle, verifies the "
    "package (sha256), assigns the next version, stores its lineage (SQLite, or PostgreSQL "
    "via MODELBUS_DB_URL), mirrors versions and the champion/canary aliases into MLflow "
    "(MLFLOW_TRACKING_URI), and emits ModelRegistered or RegistrationFailed. Serves a REST "
    "API (OpenAPI docs at /docs) whose write endpoints need MODELBUS_REGISTRY_API_TOKEN. "
    "Settings come from MODELBUS_REGISTRY_* variables; the broker from "
    "MODELBUS_BOOTSTRAP_SERVERS.",
    no_args_is_help=True,
)


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as error:
        problems = "; ".join(str(e["msg"]) for e in error.errors())
        typer.echo(f"registry: refusing to start: {problems}", err=True)
        raise typer.Exit(2) from error


@app.command()
def run(log_level: str = typer.Option("INFO", help="Log level.")) -> None:
    """Consume lifecycle events and serve the REST API in one process (Ctrl-C stops)."""
    settings = _settings()
    configure_logging("registry", level=log_level)
    refuse_misconfigured_broker("registry", settings.kafka.bootstrap_servers)
    from modelbus_registry.bootstrap import run as run_registry

    asyncio.run(run_registry(settings))


@app.command()
def settings() -> None:
    """Print the effective settings (the token masked)."""
    typer.echo(json.dumps(json.loads(_settings().model_dump_json()), indent=2))


@app.callback()
def main() -> None:
    """modelbus registry."""


if __name__ == "__main__":
    app()

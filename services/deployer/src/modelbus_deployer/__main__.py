"""``python -m modelbus_deployer``: the canary rollout service."""

from __future__ import annotations

import typer
from rich import print_json

from modelbus_deployer.config import Settings

app = typer.Typer(
    help="modelbus deployer: runs canary rollouts (5% -> 25% -> 50% -> 100%) from "
    "ModelRegistered, judged on ModelHealth, ending in ModelPromoted or ModelRolledBack. "
    "The rollout state machine is not built yet; this package holds its settings.",
    no_args_is_help=True,
)


@app.command()
def settings() -> None:
    """Print the effective settings (defaults overridden by MODELBUS_DEPLOYER_* variables)."""
    print_json(Settings().model_dump_json())


@app.callback()
def main() -> None:
    """modelbus deployer."""


if __name__ == "__main__":
    app()

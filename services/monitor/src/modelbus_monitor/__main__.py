"""``python -m modelbus_monitor``: the drift monitor (Faust + River)."""

from __future__ import annotations

import typer
from rich import print_json

from modelbus_monitor.config import Settings

app = typer.Typer(
    help="modelbus monitor: River drift detectors on every feature, the prediction and the "
    "error stream; emits DriftDetected and ModelHealth windows. "
    "The detectors are not built yet; this package holds its settings.",
    no_args_is_help=True,
)


@app.command()
def settings() -> None:
    """Print the effective settings (defaults overridden by MODELBUS_MONITOR_* variables)."""
    print_json(Settings().model_dump_json())


@app.callback()
def main() -> None:
    """modelbus monitor."""


if __name__ == "__main__":
    app()

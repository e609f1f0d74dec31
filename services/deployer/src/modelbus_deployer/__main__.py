"""``python -m modelbus_deployer``: canary rollouts judged on live health."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated

import structlog
import typer
from rich import print_json

from modelbus.service import refuse_misconfigured_broker, stop_on_signals
from modelbus_deployer.config import Settings

log = structlog.get_logger(__name__)

app = typer.Typer(
    help="modelbus deployer: the only writer of TrafficShifted. A model's first version gets "
    "all traffic and is promoted; every later ModelRegistered starts a canary rollout "
    "(RolloutStarted, then TrafficShifted per step, default 5% -> 25% -> 50% -> 100%) judged "
    "on the monitor's ModelHealth windows, candidate against champion over the same windows "
    "(CanaryEvaluated with every guardrail's figures, bound and verdict), ending in "
    "ModelPromoted or ModelRolledBack. PromotionRequested/RollbackRequested act at once. "
    "State is a fold over modelbus.lifecycle and modelbus.health, rebuilt on start; one "
    "instance acts (the holder of the lifecycle partition in its consumer group), others "
    "wait and take over. Settings come from MODELBUS_DEPLOYER_* variables (see `settings`).",
    no_args_is_help=True,
)


@app.command()
def run() -> None:
    """Create the topics, then act while holding the lifecycle log, until SIGTERM."""
    from modelbus.bus.topics import ensure_deployment_topics
    from modelbus_deployer.bootstrap import bootstrap

    settings = Settings()
    kafka = settings.kafka
    refuse_misconfigured_broker("deployer", kafka.bootstrap_servers)
    ensure_deployment_topics(kafka, models=[])
    loop = bootstrap(settings)
    stop = stop_on_signals()
    log.info("deployer started", group=settings.group_id, steps=settings.steps_pct)
    loop.run(stop)
    log.info("deployer stopped", decisions=loop.decisions)


@app.command()
def verify(
    model: Annotated[str | None, typer.Option(help="Only this model.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Re-derive every decision on the lifecycle log with this deployer's pure fold, fed the
    logged ModelHealth windows and each rollout's recorded policy; exit 1 naming each logged
    decision the fold would not have made, made differently, or made but is not on the log."""
    from modelbus_deployer.verify import read_and_verify

    result = read_and_verify(Settings().kafka, model=model)
    if as_json:
        print(json.dumps({"ok": result.ok, "decisions": result.decisions,
                          "matched": result.matched,
                          "findings": [asdict(f) for f in result.findings]}, indent=2))  # fmt: skip
    else:
        for finding in result.findings:
            typer.echo(str(finding))
        typer.echo(f"{result.matched}/{result.decisions} logged decisions re-derived exactly; "
                   f"{len(result.findings)} finding(s)")  # fmt: skip
    if not result.ok:
        raise typer.Exit(1)


@app.command()
def settings() -> None:
    """Print the effective settings (defaults overridden by MODELBUS_DEPLOYER_* variables)."""
    print_json(Settings().model_dump_json())


if __name__ == "__main__":
    app()

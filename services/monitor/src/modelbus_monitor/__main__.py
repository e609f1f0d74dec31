"""``python -m modelbus_monitor``: the drift monitor (River detectors on every model's streams)."""

from __future__ import annotations

import structlog
import typer
from rich import print_json

from modelbus.service import refuse_misconfigured_broker, stop_on_signals
from modelbus_monitor.config import Settings

log = structlog.get_logger(__name__)

app = typer.Typer(
    help="modelbus monitor: follows modelbus.lifecycle to learn every model and version (a "
    "model registered later is picked up without a restart) and each version's training "
    "profile.json, then reads modelbus.<model>.requests, .predictions, .feedback, .dlq "
    "and .shadow (a shadow candidate's results, joined with labels apart). "
    "It joins request, result and label by request id, runs River ADWIN detectors on every "
    "feature, the positive score and the 0/1 error stream per version and variant, and "
    "publishes one DriftDetected per drift episode (with evidence, onset time and the "
    "request offsets where the new regime starts) to modelbus.lifecycle, and a ModelHealth "
    "per version, variant and window to modelbus.health. State is rebuilt on start by "
    "replaying the topics' recent tail; nothing is pickled. Undecodable results and labels "
    "go to the model's DLQ with the reason. One monitor per group acts; others of the same "
    "group stand by and take over when it dies. Settings come from MODELBUS_MONITOR_* "
    "variables (see `settings`).",
    no_args_is_help=True,
)


@app.command()
def run() -> None:
    """Watch every model while holding the lease: topics, replay of the logs, then live streams.

    A second monitor of the same group stands by and takes over when this one stops or dies.
    """
    from modelbus.bus.topics import ensure_deployment_topics
    from modelbus_monitor.bootstrap import bootstrap
    from modelbus_monitor.lease import Lease

    settings = Settings()
    kafka = settings.kafka
    refuse_misconfigured_broker("monitor", kafka.bootstrap_servers)
    ensure_deployment_topics(kafka, models=[])
    stop = stop_on_signals()
    lease = Lease(kafka.bootstrap_servers, settings.group_id, settings.session_timeout_ms)
    lease.start(stop)
    log.info("waiting for the monitor lease", group=lease.group)
    while (term := lease.term(stop)) is not None:
        monitor = bootstrap(settings)
        read = monitor.replay_logs()
        log.info("logs replayed", events=read, models=sorted(monitor.monitors.models))
        monitor.run(term)
    lease.join()


@app.command()
def settings() -> None:
    """Print the effective settings (defaults overridden by MODELBUS_MONITOR_* variables)."""
    print_json(Settings().model_dump_json())


if __name__ == "__main__":
    app()

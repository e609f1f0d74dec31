"""``modelbus demo``: the loop on generated data, printing only what happened on the bus."""

from __future__ import annotations

from rich.console import Console

from modelbus.bus import ensure_topics, topic_specs
from modelbus.cli.selfcheck import run_selfcheck
from modelbus.config import KafkaSettings


def run_demo(settings: KafkaSettings, console: Console) -> int:
    """Run every stage that exists; returns the process exit code."""
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
    return 0

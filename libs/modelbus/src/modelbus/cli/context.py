"""What every CLI command starts from: the settings and a codec that knows the broker's schemas."""

from __future__ import annotations

from typing import Any

import typer
from confluent_kafka import KafkaException
from rich.console import Console

from modelbus.bus import LIFECYCLE_TOPIC
from modelbus.bus.reading import read_events
from modelbus.bus.schema_topic import kafka_schema_store
from modelbus.config import KafkaSettings
from modelbus.events import Codec, GenericRecord, build_codec


def cli_settings() -> KafkaSettings:
    """Broker and topic settings from the environment (MODELBUS_*)."""
    return KafkaSettings()


def cli_codec(settings: KafkaSettings) -> Codec:
    """Every event schema, the configured models' contracts, and every schema on the broker."""
    return build_codec(
        kafka_schema_store(settings.bootstrap_servers), models=tuple(settings.models)
    )


def lifecycle_events(settings: KafkaSettings, codec: Codec, console: Console) -> list[Any]:
    """Every typed event of the lifecycle log; exit 1 with the reason if the broker is away.

    Events of types this release does not know (decoded as generic records) are left out.
    """
    try:
        events = read_events(settings.bootstrap_servers, LIFECYCLE_TOPIC, codec, timeout_s=15)
        return [event for event in events if not isinstance(event, GenericRecord)]
    except (LookupError, TimeoutError, KafkaException) as error:
        console.print(f"[red]the broker at {settings.bootstrap_servers} did not answer: {error}")
        raise typer.Exit(1) from error

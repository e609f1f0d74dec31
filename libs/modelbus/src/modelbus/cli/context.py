"""What every CLI command starts from: the settings and a codec that knows the broker's schemas."""

from __future__ import annotations

from modelbus.bus.schema_topic import kafka_schema_store
from modelbus.config import KafkaSettings
from modelbus.events import Codec, build_codec


def cli_settings() -> KafkaSettings:
    """Broker and topic settings from the environment (MODELBUS_*)."""
    return KafkaSettings()


def cli_codec(settings: KafkaSettings) -> Codec:
    """Every event schema, the configured models' contracts, and every schema on the broker."""
    return build_codec(
        kafka_schema_store(settings.bootstrap_servers), models=tuple(settings.models)
    )

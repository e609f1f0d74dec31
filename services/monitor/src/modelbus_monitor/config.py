"""Settings of the monitor service."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from modelbus.config import KafkaSettings


class Settings(BaseSettings):
    """monitor settings (env prefix ``MODELBUS_MONITOR_``; the broker's: ``MODELBUS_``)."""

    model_config = SettingsConfigDict(env_prefix="MODELBUS_MONITOR_", extra="ignore")

    kafka: KafkaSettings = Field(default_factory=KafkaSettings, description="Broker and topics.")

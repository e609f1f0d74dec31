"""Settings of the deployer service."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from modelbus.config import KafkaSettings


class Settings(BaseSettings):
    """deployer settings (env prefix ``MODELBUS_DEPLOYER_``; the broker's: ``MODELBUS_``)."""

    model_config = SettingsConfigDict(env_prefix="MODELBUS_DEPLOYER_", extra="ignore")

    kafka: KafkaSettings = Field(default_factory=KafkaSettings, description="Broker and topics.")

"""How every Kafka client of modelbus authenticates: one set of settings, one mapping per client.

Settings come from the environment (``MODELBUS_KAFKA_*``), so a service, a test or the CLI
started with a principal's ``credentials.env`` sourced connects as that principal, and one
started without it connects in plaintext exactly as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "MODELBUS_KAFKA_"


class SecuritySettings(BaseSettings):
    """Authentication and transport security of Kafka clients. Env prefix ``MODELBUS_KAFKA_``."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    security_protocol: Literal["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT",
        description="PLAINTEXT (no authentication), SASL_PLAINTEXT (SCRAM over TCP, for "
        "loopback) or SASL_SSL (SCRAM over TLS).",
    )
    sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256"] = Field(
        default="SCRAM-SHA-512",
        description="SASL mechanism; only SCRAM, so a password never crosses the wire.",
    )
    sasl_username: str | None = Field(default=None, description="The principal's user name.")
    sasl_password: SecretStr | None = Field(default=None, description="The principal's password.")
    ssl_ca_location: Path | None = Field(
        default=None,
        description="PEM file of the CA that signed the broker's certificate (SASL_SSL); "
        "the system's CAs when unset.",
    )
    credentials_dir: Path | None = Field(
        default=None,
        description="Directory of each principal's <name>.env (kafka.sh writes "
        "<run dir>/credentials): services started by `modelbus up`/`demo` run as their own "
        "principal instead of this process's.",
    )

    @model_validator(mode="after")
    def _complete(self) -> SecuritySettings:
        sasl = self.security_protocol.startswith("SASL")
        if sasl and not self.sasl_username:
            raise ValueError(
                f"{self.security_protocol} needs a user name: set {ENV_PREFIX}SASL_USERNAME "
                "(or source the principal's credentials.env)"
            )
        if sasl and (self.sasl_password is None or not self.sasl_password.get_secret_value()):
            raise ValueError(
                f"{self.security_protocol} needs a password: set {ENV_PREFIX}SASL_PASSWORD "
                "(or source the principal's credentials.env)"
            )
        if not sasl and (self.sasl_username or self.sasl_password):
            raise ValueError(
                f"{ENV_PREFIX}SASL_USERNAME/PASSWORD are set but {ENV_PREFIX}SECURITY_PROTOCOL "
                "is PLAINTEXT, which would ignore them: set it to SASL_PLAINTEXT or SASL_SSL"
            )
        if self.ssl_ca_location is not None:
            if self.security_protocol != "SASL_SSL":
                raise ValueError(
                    f"{ENV_PREFIX}SSL_CA_LOCATION is set but {ENV_PREFIX}SECURITY_PROTOCOL is "
                    f"{self.security_protocol}: set it to SASL_SSL"
                )
            if not self.ssl_ca_location.is_file():
                raise ValueError(f"{ENV_PREFIX}SSL_CA_LOCATION {self.ssl_ca_location} is no file")
        return self

    @property
    def principal(self) -> str | None:
        """``User:<name>`` as the broker's ACLs name this client, or None when unauthenticated."""
        return f"User:{self.sasl_username}" if self.sasl_username else None


def principal_env(name: str, security: SecuritySettings | None = None) -> dict[str, str]:
    """The environment of principal ``name`` from the credentials directory ({} without one)."""
    chosen = security or SecuritySettings()
    if chosen.credentials_dir is None:
        return {}
    path = chosen.credentials_dir / f"{name}.env"
    if not path.is_file():
        raise FileNotFoundError(f"no credentials of principal {name!r}: {path} is missing")
    pairs = (line.removeprefix("export ").split("=", 1) for line in path.read_text().splitlines())
    return {key: value for key, value in pairs}


def client_config(
    bootstrap_servers: str,
    extra: Mapping[str, Any] | None = None,
    *,
    security: SecuritySettings | None = None,
) -> dict[str, Any]:
    """A confluent-kafka (librdkafka) config: servers, this process's security, then ``extra``."""
    chosen = security or SecuritySettings()
    config: dict[str, Any] = {"bootstrap.servers": bootstrap_servers}
    if chosen.security_protocol != "PLAINTEXT":
        config["security.protocol"] = chosen.security_protocol.lower()
        config["sasl.mechanism"] = chosen.sasl_mechanism
        config["sasl.username"] = chosen.sasl_username
        config["sasl.password"] = chosen.sasl_password.get_secret_value()  # type: ignore[union-attr]
    if chosen.ssl_ca_location is not None:
        config["ssl.ca.location"] = str(chosen.ssl_ca_location)
    return {**config, **(extra or {})}


def aiokafka_options(security: SecuritySettings | None = None) -> dict[str, Any]:
    """Keyword arguments for aiokafka's producer, consumer and admin client."""
    chosen = security or SecuritySettings()
    if chosen.security_protocol == "PLAINTEXT":
        return {}
    options: dict[str, Any] = {
        "security_protocol": chosen.security_protocol,
        "sasl_mechanism": chosen.sasl_mechanism,
        "sasl_plain_username": chosen.sasl_username,
        "sasl_plain_password": chosen.sasl_password.get_secret_value(),  # type: ignore[union-attr]
    }
    if chosen.security_protocol == "SASL_SSL":
        from aiokafka.helpers import create_ssl_context

        cafile = str(chosen.ssl_ca_location) if chosen.ssl_ca_location else None
        options["ssl_context"] = create_ssl_context(cafile=cafile)
    return options

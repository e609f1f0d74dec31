"""Why a client cannot reach the broker, named by the ``MODELBUS_KAFKA_*`` setting that fixes it.

A refused TLS handshake or login is retried by librdkafka until a timeout, which then says only
"Broker transport failure"; ``check_connection`` asks the broker for its metadata within a
deadline and turns librdkafka's reports into one sentence a person can act on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from modelbus.bus.security import ENV_PREFIX, SecuritySettings, client_config


class BrokerUnreachable(ConnectionError):
    """The broker did not answer; the message says why and which setting to look at."""


class BrokerMisconfigured(BrokerUnreachable):
    """The broker answered and refused this client's TLS, login or protocol: retrying will not
    help until a setting changes (unlike a broker that is not up yet)."""


def explain_failure(
    reports: Iterable[str], bootstrap_servers: str, security: SecuritySettings
) -> str | None:
    """The cause among librdkafka's error and log ``reports``, or None while none is certain.

    >>> tls = SecuritySettings(security_protocol="SASL_SSL", sasl_username="client",
    ...                        sasl_password="secret")
    >>> reason = explain_failure(["SSL handshake failed: certificate verify failed"], "b:1", tls)
    >>> reason.split(" presented")[0], reason.split("the CA that ")[1].split(":")[0]
    ('TLS: the broker at b:1', "MODELBUS_KAFKA_SSL_CA_LOCATION names (unset, so the system's CAs)")
    >>> explain_failure(["Connection refused"], "b:9093", tls) is None
    True
    """
    for text in reports:
        if "certificate verify failed" in text:
            ca = security.ssl_ca_location or "unset, so the system's CAs"
            return (
                f"TLS: the broker at {bootstrap_servers} presented a certificate not signed by "
                f"the CA that {ENV_PREFIX}SSL_CA_LOCATION names ({ca}): set it to the PEM of "
                "the CA that signed the broker's certificate (kafka.sh writes <run dir>/tls/ca.pem)"
            )
        if "SASL authentication error" in text:
            detail = text.split("SASL authentication error: ", 1)[1].split(" (after")[0]
            return (
                f"authentication as {security.sasl_username!r} failed ({detail}): check "
                f"{ENV_PREFIX}SASL_USERNAME and {ENV_PREFIX}SASL_PASSWORD "
                "(source the principal's credentials.env)"
            )
        if "connection closed by peer" in text and "APIVERSION_QUERY" in text:
            wanted = (
                f"TLS: set {ENV_PREFIX}SECURITY_PROTOCOL=SASL_SSL and {ENV_PREFIX}SSL_CA_LOCATION"
                if security.security_protocol == "SASL_PLAINTEXT"
                else f"SASL or TLS: set {ENV_PREFIX}SECURITY_PROTOCOL=SASL_PLAINTEXT or SASL_SSL"
            )
            return (
                f"the broker at {bootstrap_servers} closed the connection before answering "
                f"{security.security_protocol}: its listener likely needs {wanted} "
                "(or source the principal's credentials.env)"
            )
    return None


class _Reports(logging.Handler):
    def __init__(self, into: list[str]) -> None:
        super().__init__()
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(record.getMessage())


def check_connection(
    bootstrap_servers: str, *, security: SecuritySettings | None = None, timeout_s: float = 15.0
) -> None:
    """Return once the broker answers; raise BrokerUnreachable with the cause otherwise,
    as soon as the cause is certain (a refused certificate or login) or at ``timeout_s``."""
    chosen = security or SecuritySettings()
    reports: list[str] = []
    librdkafka_log = logging.Logger("modelbus.connection_check")  # kept out of the app's logs
    librdkafka_log.addHandler(_Reports(reports))

    def on_error(error: KafkaError) -> None:
        reports.append(error.str())

    admin = AdminClient(
        client_config(
            bootstrap_servers, {"error_cb": on_error, "logger": librdkafka_log}, security=chosen
        )
    )
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            admin.list_topics(timeout=max(0.1, min(1.0, deadline - time.monotonic())))
            return
        except KafkaException as error:
            last = error.args[0].str()
        admin.poll(0)  # serves error_cb and the log
        reason = explain_failure(reports, bootstrap_servers, chosen)
        if reason is not None:
            raise BrokerMisconfigured(reason)
        if time.monotonic() >= deadline:
            seen = reports[-1] if reports else last
            raise BrokerUnreachable(
                f"no answer from {bootstrap_servers} ({chosen.security_protocol}) within "
                f"{timeout_s:g} s: {seen}"
            )

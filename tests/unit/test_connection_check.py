"""explain_failure: librdkafka's reports of a refused connection, as the setting to fix."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr

from modelbus.bus.connection_check import explain_failure
from modelbus.bus.security import SecuritySettings

BOOTSTRAP = "127.0.0.1:9093"
# The texts librdkafka 2.x reports (error_cb and its FAIL log lines) for each cause.
CERTIFICATE_REFUSED = (
    "sasl_ssl://127.0.0.1:9093/bootstrap: SSL handshake failed: error:0A000086:SSL routines::"
    "certificate verify failed: broker certificate could not be verified, verify that "
    "ssl.ca.location is correctly configured (after 5ms in state SSL_HANDSHAKE)"
)
LOGIN_REFUSED = (
    "sasl_ssl://127.0.0.1:9093/bootstrap: SASL authentication error: Authentication failed "
    "during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512 "
    "(after 319ms in state AUTH_REQ)"
)
CLOSED_BEFORE_ANSWERING = (
    "[thrd:sasl_plaintext://127.0.0.1:9093/bootstrap]: sasl_plaintext://127.0.0.1:9093/"
    "bootstrap: Disconnected: connection closed by peer: receive 0 after POLLIN "
    "(after 3ms in state APIVERSION_QUERY)"
)
REFUSED_PORT = (
    "Connect to ipv4#127.0.0.1:9093 failed: Connection refused (after 0ms in state CONNECT)"
)


def security(protocol: str = "SASL_SSL", ca: Path | None = None) -> SecuritySettings:
    return SecuritySettings.model_construct(
        security_protocol=protocol,
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="client",
        sasl_password=SecretStr("secret"),
        ssl_ca_location=ca,
    )


def test_a_refused_certificate_names_the_ca_setting_and_the_file_it_holds() -> None:
    reason = explain_failure([CERTIFICATE_REFUSED], BOOTSTRAP, security(ca=Path("/etc/ca.pem")))
    assert reason == (
        "TLS: the broker at 127.0.0.1:9093 presented a certificate not signed by the CA that "
        "MODELBUS_KAFKA_SSL_CA_LOCATION names (/etc/ca.pem): set it to the PEM of the CA that "
        "signed the broker's certificate (kafka.sh writes <run dir>/tls/ca.pem)"
    )


def test_a_refused_login_names_the_principal_the_cause_and_the_credential_settings() -> None:
    reason = explain_failure([LOGIN_REFUSED], BOOTSTRAP, security())
    assert reason == (
        "authentication as 'client' failed (Authentication failed during authentication due "
        "to invalid credentials with SASL mechanism SCRAM-SHA-512): check "
        "MODELBUS_KAFKA_SASL_USERNAME and MODELBUS_KAFKA_SASL_PASSWORD (source the principal's "
        "credentials.env)"
    )


def test_plaintext_sasl_closed_before_an_answer_points_at_tls() -> None:
    reason = explain_failure([CLOSED_BEFORE_ANSWERING], BOOTSTRAP, security("SASL_PLAINTEXT"))
    assert reason == (
        "the broker at 127.0.0.1:9093 closed the connection before answering SASL_PLAINTEXT: "
        "its listener likely needs TLS: set MODELBUS_KAFKA_SECURITY_PROTOCOL=SASL_SSL and "
        "MODELBUS_KAFKA_SSL_CA_LOCATION (or source the principal's credentials.env)"
    )


def test_plaintext_closed_before_an_answer_points_at_sasl_or_tls() -> None:
    reason = explain_failure([CLOSED_BEFORE_ANSWERING], BOOTSTRAP, security("PLAINTEXT"))
    assert reason is not None
    assert "needs SASL or TLS: set MODELBUS_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT or SASL_SSL" in (
        reason
    )


def test_a_broker_that_is_not_there_is_left_to_the_timeout() -> None:
    assert explain_failure([REFUSED_PORT, "1/1 brokers are down"], BOOTSTRAP, security()) is None

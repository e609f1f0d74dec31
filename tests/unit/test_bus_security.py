"""Client security settings: one mapping from the environment to every Kafka client."""

from __future__ import annotations

import ssl

import pytest
from pydantic import ValidationError

from modelbus.bus.security import SecuritySettings, aiokafka_options, client_config, principal_env

SECURITY_VARIABLES = (
    "MODELBUS_KAFKA_SECURITY_PROTOCOL",
    "MODELBUS_KAFKA_SASL_MECHANISM",
    "MODELBUS_KAFKA_SASL_USERNAME",
    "MODELBUS_KAFKA_SASL_PASSWORD",
    "MODELBUS_KAFKA_SSL_CA_LOCATION",
    "MODELBUS_KAFKA_CREDENTIALS_DIR",
)


@pytest.fixture(autouse=True)
def no_security_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SECURITY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def scram(monkeypatch: pytest.MonkeyPatch, protocol: str = "SASL_PLAINTEXT") -> None:
    monkeypatch.setenv("MODELBUS_KAFKA_SECURITY_PROTOCOL", protocol)
    monkeypatch.setenv("MODELBUS_KAFKA_SASL_USERNAME", "inference")
    monkeypatch.setenv("MODELBUS_KAFKA_SASL_PASSWORD", "s3cret")


def test_plaintext_by_default_gives_exactly_the_old_config() -> None:
    assert client_config("127.0.0.1:19192", {"group.id": "g"}) == {
        "bootstrap.servers": "127.0.0.1:19192",
        "group.id": "g",
    }
    assert aiokafka_options() == {}


def test_scram_credentials_from_the_environment_reach_librdkafka(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scram(monkeypatch)
    assert client_config("h:1", {"linger.ms": 5}) == {
        "bootstrap.servers": "h:1",
        "security.protocol": "sasl_plaintext",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "inference",
        "sasl.password": "s3cret",
        "linger.ms": 5,
    }


def test_scram_credentials_reach_aiokafka_without_tls_on_plaintext(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scram(monkeypatch)
    assert aiokafka_options() == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "inference",
        "sasl_plain_password": "s3cret",
    }


def test_sasl_ssl_names_the_ca_for_librdkafka_and_builds_a_context_for_aiokafka(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-ca")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(1)
        .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    ca = tmp_path / "ca.pem"
    ca.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    scram(monkeypatch, "SASL_SSL")
    monkeypatch.setenv("MODELBUS_KAFKA_SSL_CA_LOCATION", str(ca))
    config = client_config("h:1")
    assert config["security.protocol"] == "sasl_ssl"
    assert config["ssl.ca.location"] == str(ca)
    options = aiokafka_options()
    assert options["security_protocol"] == "SASL_SSL"
    assert isinstance(options["ssl_context"], ssl.SSLContext)
    assert options["ssl_context"].verify_mode == ssl.CERT_REQUIRED


def test_sasl_without_a_username_names_the_variable_to_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MODELBUS_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("MODELBUS_KAFKA_SASL_PASSWORD", "s3cret")
    with pytest.raises(ValidationError, match="set MODELBUS_KAFKA_SASL_USERNAME"):
        client_config("h:1")


def test_sasl_without_a_password_names_the_variable_to_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MODELBUS_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("MODELBUS_KAFKA_SASL_USERNAME", "client")
    with pytest.raises(ValidationError, match="set MODELBUS_KAFKA_SASL_PASSWORD"):
        aiokafka_options()


def test_credentials_with_plaintext_are_refused_rather_than_silently_ignored(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MODELBUS_KAFKA_SASL_USERNAME", "client")
    monkeypatch.setenv("MODELBUS_KAFKA_SASL_PASSWORD", "s3cret")
    with pytest.raises(ValidationError, match="set it to SASL_PLAINTEXT or SASL_SSL"):
        SecuritySettings()


def test_a_ca_file_that_does_not_exist_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    scram(monkeypatch, "SASL_SSL")
    monkeypatch.setenv("MODELBUS_KAFKA_SSL_CA_LOCATION", str(tmp_path / "missing.pem"))
    with pytest.raises(ValidationError, match=r"missing\.pem is no file"):
        SecuritySettings()


def test_plain_mechanism_is_refused_so_no_password_crosses_the_wire(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scram(monkeypatch)
    monkeypatch.setenv("MODELBUS_KAFKA_SASL_MECHANISM", "PLAIN")
    with pytest.raises(ValidationError, match="SCRAM-SHA-512"):
        SecuritySettings()


def test_the_password_never_shows_in_the_settings_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    scram(monkeypatch)
    settings = SecuritySettings()
    assert "s3cret" not in repr(settings)
    assert settings.principal == "User:inference"


def test_explicit_settings_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    scram(monkeypatch)
    assert client_config("h:1", security=SecuritySettings(security_protocol="PLAINTEXT",
        sasl_username=None, sasl_password=None)) == {"bootstrap.servers": "h:1"}  # fmt: skip


def test_a_service_gets_its_own_principal_from_the_credentials_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    (tmp_path / "inference.env").write_text(
        "export MODELBUS_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT\n"
        "export MODELBUS_KAFKA_SASL_USERNAME=inference\n"
        "export MODELBUS_KAFKA_SASL_PASSWORD=a=b\n"
    )
    scram(monkeypatch)
    monkeypatch.setenv("MODELBUS_KAFKA_CREDENTIALS_DIR", str(tmp_path))
    assert principal_env("inference") == {
        "MODELBUS_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "MODELBUS_KAFKA_SASL_USERNAME": "inference",
        "MODELBUS_KAFKA_SASL_PASSWORD": "a=b",
    }
    with pytest.raises(FileNotFoundError, match="no credentials of principal 'monitor'"):
        principal_env("monitor")


def test_without_a_credentials_directory_services_inherit_this_process_environment() -> None:
    assert principal_env("inference") == {}

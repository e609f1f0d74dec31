"""The bus over TLS: a broker of this module's own with KAFKA_SECURITY=sasl_ssl (SCRAM over TLS,
a certificate signed by a CA of its run directory). Both client libraries the bus uses carry an
event through it; a client that trusts another CA, speaks plaintext SASL or brings a wrong
password gets nothing, within a bounded time, and is told why."""

from __future__ import annotations

import asyncio
import datetime
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaConnectionError
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import SecretStr

from modelbus.bus import LIFECYCLE_TOPIC, Publisher
from modelbus.bus.aio import AsyncConsumerLoop, AsyncPublisher
from modelbus.bus.connection_check import BrokerUnreachable, check_connection
from modelbus.bus.dispatch import Dispatcher
from modelbus.bus.reading import read_events
from modelbus.bus.schema_topic import kafka_schema_store
from modelbus.bus.security import SecuritySettings, aiokafka_options, client_config
from modelbus.config import KafkaSettings
from modelbus.events import build_codec
from modelbus.events import types as t
from tests.support.broker import Bus, DedicatedKafka, create_model_topics, dedicated_kafka
from tests.support.events import model_trained, registered
from tests.support.packages import make_package
from tests.support.ports import free_port
from tests.support.processes import http_ready, registry_env, service

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

MODEL = f"tls{uuid.uuid4().hex[:8]}"
REFUSAL_BOUND_S = 20.0
"""How long a refused client may take to learn it is refused (each takes about 1 s)."""


@dataclass
class TlsBus:
    kafka: DedicatedKafka
    settings: KafkaSettings
    on_the_log: t.ModelRegistered
    """Published over TLS when the broker started: what a refused reader must not see."""


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsBus]:
    """The sasl_ssl broker, its topics, one event on its lifecycle log; this process is admin."""
    run_dir = tmp_path_factory.mktemp("tls")
    with (
        dedicated_kafka(run_dir, security="sasl_ssl") as kafka,
        pytest.MonkeyPatch.context() as patch,
    ):
        for name, value in kafka.credentials("admin").items():
            patch.setenv(name, value)
        patch.delenv("MODELBUS_KAFKA_CREDENTIALS_DIR")
        assert os.environ["MODELBUS_KAFKA_SSL_CA_LOCATION"] == str(kafka.ca_file)
        settings = KafkaSettings(bootstrap_servers=kafka.bootstrap)
        create_model_topics(settings, MODEL, partitions=1)
        first = registered(MODEL, 1, run_dir, "1" * 64)
        publisher = Publisher(settings, build_codec(), client_id=f"test-tls-{MODEL}")
        publisher.publish(first)
        publisher.flush()
        del publisher  # its client would keep calling the broker after it stops
        yield TlsBus(kafka, settings, first)


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway CA's certificate (PEM): valid, but not the one that signed the broker's."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "not the modelbus CA")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path = tmp_path_factory.mktemp("other-ca") / "ca.pem"
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return path


def admin_security(**changes: Any) -> SecuritySettings:
    """This process's (admin's) settings on the TLS broker, with ``changes``."""
    return SecuritySettings().model_copy(update=changes)


def refusal(security: SecuritySettings, bootstrap: str) -> tuple[str, float]:
    """What check_connection says to a client with ``security``, and how long it took."""
    started = time.monotonic()
    with pytest.raises(BrokerUnreachable) as refused:
        check_connection(bootstrap, security=security, timeout_s=REFUSAL_BOUND_S)
    return str(refused.value), time.monotonic() - started


def aiokafka_refusal(security: SecuritySettings, bootstrap: str) -> float:
    """Seconds until an aiokafka consumer with ``security`` fails to connect."""

    async def connect() -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, **aiokafka_options(security))
        try:
            await asyncio.wait_for(consumer.start(), REFUSAL_BOUND_S)
        finally:
            await consumer.stop()

    started = time.monotonic()
    with pytest.raises(KafkaConnectionError):
        asyncio.run(connect())
    return time.monotonic() - started


def test_an_event_published_with_confluent_kafka_is_read_back_by_aiokafka_over_tls(
    tls: TlsBus, tmp_path: Path
) -> None:
    sent = registered(MODEL, 2, tmp_path, "2" * 64)
    publisher = Publisher(tls.settings, build_codec(), client_id=f"test-tls-confluent-{MODEL}")
    publisher.publish(sent)
    publisher.flush()
    received: list[t.ModelRegistered] = []
    reader_codec = build_codec(kafka_schema_store(tls.kafka.bootstrap))

    async def read_until_sent_arrives() -> None:
        dead_letters = AsyncPublisher(tls.settings, reader_codec, client_id="test-tls-aio")
        loop = AsyncConsumerLoop(
            tls.settings,
            group_id=f"test-tls-{uuid.uuid4()}",
            topics=[LIFECYCLE_TOPIC],
            dispatcher=Dispatcher(
                reader_codec, {t.ModelRegistered: [received.append]}, producer="test-tls"
            ),
            publisher=dead_letters,
        )
        await dead_letters.start()
        await loop.start()
        try:
            deadline = time.monotonic() + 30
            while sent not in received and time.monotonic() < deadline:
                await loop.poll_once()
        finally:
            await loop.stop()
            await dead_letters.stop()
        assert loop.dead_lettered == 0

    asyncio.run(read_until_sent_arrives())
    ours = {tls.on_the_log.meta.event_id, sent.meta.event_id}
    assert [event for event in received if event.meta.event_id in ours] == [tls.on_the_log, sent]


def test_an_event_published_with_aiokafka_is_read_back_by_confluent_kafka_over_tls(
    tls: TlsBus, tmp_path: Path
) -> None:
    sent = registered(MODEL, 3, tmp_path, "3" * 64)

    async def publish() -> None:
        publisher = AsyncPublisher(tls.settings, build_codec(), client_id="test-tls-aio-writer")
        await publisher.start()
        try:
            await publisher.publish(sent)
        finally:
            await publisher.stop()

    asyncio.run(publish())
    codec = build_codec(kafka_schema_store(tls.kafka.bootstrap))
    found = [
        event
        for event in read_events(tls.kafka.bootstrap, LIFECYCLE_TOPIC, codec, key=MODEL)
        if event.meta.event_id == sent.meta.event_id
    ]
    assert found == [sent]


def test_a_client_trusting_another_ca_is_refused_and_told_to_check_the_ca_setting(
    tls: TlsBus, other_ca: Path, caplog: pytest.LogCaptureFixture
) -> None:
    wrong_ca = admin_security(ssl_ca_location=other_ca)

    message, took_s = refusal(wrong_ca, tls.kafka.bootstrap)
    assert message.startswith(f"TLS: the broker at {tls.kafka.bootstrap} presented a certificate")
    assert f"MODELBUS_KAFKA_SSL_CA_LOCATION names ({other_ca})" in message
    assert took_s < REFUSAL_BOUND_S

    assert aiokafka_refusal(wrong_ca, tls.kafka.bootstrap) < REFUSAL_BOUND_S
    assert "CERTIFICATE_VERIFY_FAILED" in caplog.text

    # What a person sees: the first command of the README's secured setup, with the wrong CA.
    started = time.monotonic()
    cli = subprocess.run(
        [sys.executable, "-m", "modelbus.cli", "topics", "create"],
        env={**os.environ, "MODELBUS_KAFKA_SSL_CA_LOCATION": str(other_ca), "COLUMNS": "500"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cli.returncode == 1
    assert f"MODELBUS_KAFKA_SSL_CA_LOCATION names ({other_ca})" in cli.stdout
    assert time.monotonic() - started < 60


def test_a_client_speaking_plaintext_sasl_to_the_tls_listener_reads_nothing(tls: TlsBus) -> None:
    plaintext = admin_security(security_protocol="SASL_PLAINTEXT", ssl_ca_location=None)

    group = {"group.id": f"test-tls-{uuid.uuid4()}"}
    consumer = Consumer(client_config(tls.kafka.bootstrap, group, security=plaintext))
    try:
        consumer.assign([TopicPartition(LIFECYCLE_TOPIC, 0, OFFSET_BEGINNING)])
        read = [m for m in consumer.consume(100, timeout=3) if m.error() is None]
    finally:
        consumer.close()
    assert read == []  # while the log holds at least tls.on_the_log

    message, took_s = refusal(plaintext, tls.kafka.bootstrap)
    assert "closed the connection before answering SASL_PLAINTEXT" in message
    assert "MODELBUS_KAFKA_SECURITY_PROTOCOL=SASL_SSL" in message
    assert took_s < REFUSAL_BOUND_S
    assert aiokafka_refusal(plaintext, tls.kafka.bootstrap) < REFUSAL_BOUND_S


def test_a_wrong_password_over_tls_is_refused_as_an_authentication_failure(
    tls: TlsBus, caplog: pytest.LogCaptureFixture
) -> None:
    wrong_password = admin_security(sasl_password=SecretStr("not-the-password"))

    message, took_s = refusal(wrong_password, tls.kafka.bootstrap)
    assert message.startswith("authentication as 'admin' failed")
    assert "invalid credentials with SASL mechanism SCRAM-SHA-512" in message
    assert "MODELBUS_KAFKA_SASL_PASSWORD" in message
    assert took_s < REFUSAL_BOUND_S

    assert aiokafka_refusal(wrong_password, tls.kafka.bootstrap) < REFUSAL_BOUND_S
    assert "SaslAuthenticationFailed" in caplog.text


def test_the_registry_runs_as_its_own_principal_over_tls_and_registers_a_trained_model(
    tls: TlsBus, tmp_path: Path
) -> None:
    model = f"{MODEL}reg"
    sha = make_package(tmp_path / "trained", model, seed=1)
    trained = model_trained(model, str(tmp_path / "trained"), sha)
    (tmp_path / "registry").mkdir()
    port = free_port()
    principal = tls.kafka.credentials("registry")
    principal.pop("MODELBUS_KAFKA_CREDENTIALS_DIR")
    assert principal["MODELBUS_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    env = {
        **registry_env(
            tls.kafka.bootstrap,
            tmp_path / "registry",
            port=port,
            tracking_uri=f"sqlite:///{tmp_path / 'registry' / 'mlflow.db'}",
            group_id=f"modelbus-registry-tls-{model}",  # the registry principal's groups
        ),
        "MODELBUS_REGISTRY_MLFLOW_MIRROR": "false",
        **principal,
    }
    create_model_topics(tls.settings, "credit", partitions=1)  # the models a service expects
    bus = Bus(tls.settings, f"test-tls-{model}")
    ready = http_ready(f"http://127.0.0.1:{port}/healthz")
    with service("modelbus_registry", env, tmp_path / "registry", ready=ready):
        bus.publish(trained)
        [answer] = bus.wait_for(model, t.ModelRegistered, timeout_s=90)
    del bus

    assert (answer.version, answer.artifact_sha256) == (1, sha)
    assert answer.meta.causation_id == trained.meta.event_id
    assert answer.meta.producer.startswith("registry")

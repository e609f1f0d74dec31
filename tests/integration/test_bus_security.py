"""The bus with security on (a broker of this module's own, KAFKA_SECURITY=sasl): SCRAM
authentication, ACLs from modelbus.bus.acls, each principal limited to its job."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from modelbus.bus.acl_admin import apply_acls, current_acls
from modelbus.bus.acls import acl_table
from modelbus.bus.publisher import Publisher
from modelbus.bus.security import SecuritySettings, client_config
from modelbus.bus.topics import (
    LIFECYCLE_TOPIC,
    TopicCreationRefused,
    data_topic,
    ensure_topics,
    topic_specs,
)
from modelbus.config import KafkaSettings
from modelbus.events import types as t
from tests.support.broker import (
    DedicatedKafka,
    TopicReader,
    create_model_topics,
    dedicated_kafka,
    encode_request,
    lifecycle_events,
    publish_lifecycle,
    request_codec,
)
from tests.support.events import registered
from tests.support.packages import TYPED_REQUEST, credit_rows
from tests.support.processes import start_worker, stop_workers
from tests.support.waiting import NotYet, eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

MODEL = f"credit{uuid.uuid4().hex[:8]}"
REQUESTS = 200


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DedicatedKafka]:
    """A SASL/SCRAM broker with the ACL table of MODEL applied; this process runs as admin."""
    run_dir = tmp_path_factory.mktemp("secured")
    with dedicated_kafka(run_dir, security="sasl") as kafka, pytest.MonkeyPatch.context() as patch:
        for name, value in kafka.credentials("admin").items():
            patch.setenv(name, value)
        apply_acls(kafka.bootstrap, acl_table([MODEL]))
        create_model_topics(KafkaSettings(bootstrap_servers=kafka.bootstrap), MODEL)
        yield kafka


def security_of(kafka: DedicatedKafka, principal: str, **changes: str) -> SecuritySettings:
    """``principal``'s security settings, with ``changes`` (e.g. a wrong password)."""
    env = kafka.credentials(principal)
    return SecuritySettings(
        security_protocol=env["MODELBUS_KAFKA_SECURITY_PROTOCOL"],
        sasl_username=changes.get("username", env["MODELBUS_KAFKA_SASL_USERNAME"]),
        sasl_password=changes.get("password", env["MODELBUS_KAFKA_SASL_PASSWORD"]),
    )


def first_error(config: dict, timeout_s: float = 30.0) -> KafkaError:
    """The first error librdkafka reports for an admin client built from ``config``."""
    seen: list[KafkaError] = []
    arrived = threading.Event()

    def record(error: KafkaError) -> None:
        seen.append(error)
        arrived.set()

    admin = AdminClient({**config, "error_cb": record})
    deadline = time.monotonic() + timeout_s
    while not arrived.is_set() and time.monotonic() < deadline:
        with pytest.raises(KafkaException):
            admin.list_topics(timeout=2)
        admin.poll(0.1)
    assert seen, f"no error reported in {timeout_s} s"
    return seen[0]


def delivery_error(producer: Producer, topic: str, value: bytes) -> KafkaError | None:
    """Produce one record and return its delivery error (None when it was written)."""
    outcome: list[KafkaError | None] = []
    producer.produce(topic, value, b"k", on_delivery=lambda error, _msg: outcome.append(error))
    assert producer.flush(30) == 0
    return outcome[0]


def test_a_client_without_credentials_is_refused(secured: DedicatedKafka) -> None:
    plaintext = SecuritySettings(
        security_protocol="PLAINTEXT", sasl_username=None, sasl_password=None
    )
    error = first_error(client_config(secured.bootstrap, security=plaintext))
    assert error.code() in (KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN)


def test_a_wrong_password_is_refused_as_an_authentication_failure(
    secured: DedicatedKafka,
) -> None:
    wrong = security_of(secured, "client", password="not-the-password")
    error = first_error(client_config(secured.bootstrap, security=wrong))
    assert error.code() == KafkaError._AUTHENTICATION
    assert "invalid credentials" in error.str()


def test_the_client_writes_requests_but_may_not_write_the_lifecycle_log(
    secured: DedicatedKafka,
) -> None:
    client = security_of(secured, "client")
    producer = Producer(client_config(secured.bootstrap, {"linger.ms": 0}, security=client))
    assert delivery_error(producer, data_topic(MODEL, "requests"), b"r") is None
    assert delivery_error(producer, data_topic(MODEL, "feedback"), b"f") is None
    for forbidden in (LIFECYCLE_TOPIC, "modelbus.schemas", "modelbus.health"):
        refused = delivery_error(producer, forbidden, b"forged")
        assert refused is not None
        assert refused.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_the_client_may_neither_read_the_lifecycle_log_nor_create_topics(
    secured: DedicatedKafka,
) -> None:
    client = security_of(secured, "client")
    consumer = Consumer(
        client_config(
            secured.bootstrap, {"group.id": f"modelbus-client-{uuid.uuid4()}"}, security=client
        )
    )
    try:
        described = consumer.list_topics(LIFECYCLE_TOPIC, timeout=10).topics[LIFECYCLE_TOPIC]
        assert described.error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
        # Its partitions are not even visible to the client, let alone its records.
        with pytest.raises(KafkaException, match="Unknown partition"):
            consumer.get_watermark_offsets(TopicPartition(LIFECYCLE_TOPIC, 0), timeout=10)
    finally:
        consumer.close()
    admin = AdminClient(client_config(secured.bootstrap, security=client))
    future = admin.create_topics([NewTopic(f"modelbus.{MODEL}x.requests", 1, 1)])
    with pytest.raises(KafkaException, match="AUTHORIZATION_FAILED"):
        future[f"modelbus.{MODEL}x.requests"].result()


def test_a_service_finds_existing_topics_and_may_not_create_missing_ones(
    secured: DedicatedKafka, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in secured.credentials("registry").items():
        monkeypatch.setenv(name, value)
    existing = topic_specs([MODEL], data_partitions=4, retention_ms=60_000)
    assert ensure_topics(secured.bootstrap, existing) == []
    missing = topic_specs([f"{MODEL}y"], data_partitions=4, retention_ms=60_000)
    with pytest.raises(TopicCreationRefused, match=r"run dir>/credentials/admin\.env"):
        ensure_topics(secured.bootstrap, missing)


def test_the_broker_holds_exactly_the_table_for_the_model(secured: DedicatedKafka) -> None:
    # kafka.sh up applied the table for its default model; this module added MODEL's.
    held = set(current_acls(secured.bootstrap))
    assert set(acl_table([MODEL])) <= held
    assert held == set(acl_table([MODEL])) | set(acl_table(["credit"]))


def test_inference_with_its_own_principal_serves_each_request_of_the_client_exactly_once(
    secured: DedicatedKafka, package_v1: tuple[Path, str]
) -> None:
    codec = request_codec()
    settings = KafkaSettings(bootstrap_servers=secured.bootstrap)
    # Schemas are the services' and admin's to publish; the client only sends requests.
    admin_publisher = Publisher(settings, codec, client_id="test-admin-schemas")
    for name in (TYPED_REQUEST, "modelbus.events.PredictionRequest"):
        known = codec.store.reader(name)
        assert known is not None
        admin_publisher.ensure_schema_published(known)
    admin_publisher.flush()
    publish_lifecycle(settings, codec, registered(MODEL, 1, *package_v1))
    worker = start_worker(secured.bootstrap, MODEL, **secured.credentials("inference"))
    client = security_of(secured, "client")
    producer = Producer(client_config(secured.bootstrap, {"linger.ms": 5}, security=client))
    reader = TopicReader(secured.bootstrap, data_topic(MODEL, "predictions"), codec)
    try:
        loaded = secured.bootstrap, codec, MODEL, (t.ModelLoaded,)
        eventually(lambda: lifecycle_events(*loaded) or _not_yet("no ModelLoaded yet"), 120)
        rows, _ = credit_rows(REQUESTS, seed=5)
        for number, row in enumerate(rows):
            value = encode_request(codec, MODEL, f"s{number}", row)
            producer.produce(data_topic(MODEL, "requests"), value, f"s{number}".encode())
        assert producer.flush(30) == 0
        results = reader.read_until(lambda r: len(r) >= REQUESTS, timeout_s=60, settle_s=2)
    finally:
        stop_workers([worker])
        reader.close()
    assert sorted(r.request_id for r in results) == sorted(f"s{n}" for n in range(REQUESTS))
    assert {r.version for r in results} == {1}
    # The client reads the predictions with its own principal, too.
    consumer = Consumer(
        client_config(
            secured.bootstrap,
            {"group.id": f"modelbus-client-{uuid.uuid4()}", "isolation.level": "read_committed"},
            security=client,
        )
    )
    consumer.assign([TopicPartition(data_topic(MODEL, "predictions"), p, 0) for p in range(4)])
    seen: set[str] = set()
    deadline = time.monotonic() + 30
    try:
        while len(seen) < REQUESTS and time.monotonic() < deadline:
            for message in consumer.consume(500, 0.5):
                assert message.error() is None, message.error()
                seen.add(message.key().decode())
    finally:
        consumer.close()
    assert seen == {f"s{n}" for n in range(REQUESTS)}


def _not_yet(reason: str) -> None:
    raise NotYet(reason)


SERVICES = ("registry", "trainer", "inference", "monitor", "deployer")


def test_every_service_refuses_to_start_with_a_wrong_password_and_names_the_setting(
    secured: DedicatedKafka,
) -> None:
    """Before, the registry said only "Unable to bootstrap" and the others "Broker transport
    failure", after their clients' timeouts."""
    env = {
        **os.environ,
        **secured.credentials("client"),
        "MODELBUS_BOOTSTRAP_SERVERS": secured.bootstrap,
        "MODELBUS_KAFKA_SASL_PASSWORD": "not-the-password",
        "MODELBUS_REGISTRY_API_TOKEN": "a-registry-token-long-enough-to-be-accepted",
    }
    started = time.monotonic()
    command = [sys.executable, "-m", "modelbus_{}", "run"]
    runs = {
        service: subprocess.Popen(
            [part.format(service) for part in command], env=env, text=True, stderr=subprocess.PIPE
        )
        for service in SERVICES
    }
    for service, run in runs.items():
        _, stderr = run.communicate(timeout=120)
        assert run.returncode == 2, stderr[-2000:]
        assert f"{service}: refusing to start: authentication as 'client' failed" in stderr
        assert "check MODELBUS_KAFKA_SASL_USERNAME and MODELBUS_KAFKA_SASL_PASSWORD" in stderr
    assert time.monotonic() - started < 60  # each start takes a few seconds to import

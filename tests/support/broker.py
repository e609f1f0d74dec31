"""The test's side of the real broker: topics, requests in, events and results out.

No mocks: requests and lifecycle events go through the real broker.
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from modelbus.bus import LIFECYCLE_TOPIC, Publisher, ensure_topics, topic_specs
from modelbus.bus.reading import (
    decoded,
    end_offsets,
    read_events,
    read_only_consumer,
    read_topic,
    replay,
)
from modelbus.bus.schema_topic import kafka_schema_store
from modelbus.bus.security import SecuritySettings, client_config
from modelbus.bus.topics import data_topic, dlq_topic_for
from modelbus.config import KafkaSettings
from modelbus.events import Codec, GenericRecord, build_codec, new_meta
from modelbus.events import types as t
from modelbus.events.meta import now_utc
from tests.support.events import registered
from tests.support.packages import CONTRACT, TYPED_REQUEST
from tests.support.signing import role_signers
from tests.support.waiting import NotYet, eventually


def create_model_topics(settings: KafkaSettings, model: str, partitions: int = 4) -> None:
    """The model's data topics plus the shared ones."""
    ensure_topics(
        settings.bootstrap_servers,
        topic_specs([model], data_partitions=partitions, retention_ms=settings.data_retention_ms),
    )


def request_codec() -> Codec:
    """A codec that knows every event and the credit contract."""
    return build_codec(models=(CONTRACT,))


def encode_request(
    codec: Codec, model: str, request_id: str, features: dict[str, Any], *, sent_at: Any = None
) -> bytes:
    """A typed credit PredictionRequest, single-object encoded."""
    known = codec.store.reader(TYPED_REQUEST)
    assert known is not None
    record = {
        "meta": new_meta("test-producer").to_avro(),
        "request_id": request_id,
        "model": model,
        "sent_at": sent_at or now_utc(),
        "features": features,
    }
    return codec.encode_record(record, known)


class RequestProducer:
    """Produces encoded requests keyed by request id (schemas published first)."""

    def __init__(self, settings: KafkaSettings, codec: Codec, *, idempotent: bool = False) -> None:
        self.codec = codec
        self.publisher = Publisher(settings, codec, client_id=f"test-requests-{uuid.uuid4()}")
        for name in (TYPED_REQUEST, "modelbus.events.PredictionRequest"):
            known = codec.store.reader(name)
            assert known is not None
            self.publisher.ensure_schema_published(known)
        # Idempotent where a test restarts the broker: a retried send must not become two
        # requests (which would rightly get two results).
        self.producer = Producer(
            {
                **client_config(settings.bootstrap_servers),
                "linger.ms": 5,
                "enable.idempotence": idempotent,
            }
        )

    def send_raw(self, model: str, key: str, value: bytes) -> None:
        """Produce bytes as they are."""
        while True:
            try:
                self.producer.produce(data_topic(model, "requests"), value, key.encode())
                break
            except BufferError:
                self.producer.poll(0.05)
        self.producer.poll(0)

    def send(self, model: str, request_id: str, features: dict[str, Any]) -> None:
        """Produce one valid typed request."""
        self.send_raw(model, request_id, encode_request(self.codec, model, request_id, features))

    def flush(self) -> None:
        """Wait until the broker has everything."""
        assert self.producer.flush(30) == 0


def publish_lifecycle(settings: KafkaSettings, codec: Codec, *events: Any) -> None:
    """Publish lifecycle events (keyed by model) and wait for them."""
    publisher = Publisher(
        settings, codec, client_id=f"test-lifecycle-{uuid.uuid4()}", signer=role_signers()
    )
    for event in events:
        publisher.publish(event)
    publisher.flush()


def lifecycle_dead_letters(
    bootstrap: str, codec: Codec, model: str, count: int, timeout_s: float = 60
) -> list[t.DeadLetter]:
    """The dead letters of lifecycle events keyed by ``model``, once there are ``count``."""

    def check() -> list[t.DeadLetter]:
        letters = [
            event
            for event in decoded(
                read_topic(bootstrap, dlq_topic_for(LIFECYCLE_TOPIC)),
                codec,
                on_undecodable=lambda *_: None,
            )
            if isinstance(event, t.DeadLetter) and event.key == model.encode()
        ]
        if len(letters) < count:
            raise NotYet(f"{len(letters)} of {count} dead letters for {model}")
        return letters

    return eventually(check, timeout_s=timeout_s)


def serve_model(settings: KafkaSettings, model: str, package: tuple[Path, str]) -> None:
    """Create ``model``'s topics and register ``package`` (path, sha256) as its version 1."""
    create_model_topics(settings, model)
    publish_lifecycle(settings, request_codec(), registered(model, 1, *package))


def uncommitted_records(bootstrap: str, topic: str, codec: Codec) -> list[Any]:
    """Every record of ``topic`` up to its end offsets as of now, read_uncommitted: also
    those of aborted transactions (``read_events`` gives the committed ones)."""
    consumer = read_only_consumer(
        bootstrap, purpose="test-to-end", extra={"isolation.level": "read_uncommitted"}
    )
    try:
        return list(decoded(replay(consumer, topic), codec))
    finally:
        consumer.close()


def group_members(bootstrap: str, group: str) -> dict[str, list[int]]:
    """Group instance id -> the partitions it holds now."""
    admin = AdminClient(client_config(bootstrap))
    description = admin.describe_consumer_groups([group])[group].result()
    return {
        str(m.group_instance_id): sorted(tp.partition for tp in m.assignment.topic_partitions)
        for m in description.members
    }


def member_id(bootstrap: str, group: str, instance: str) -> str | None:
    """The member id the coordinator gave group instance ``instance`` (new on each join)."""
    admin = AdminClient(client_config(bootstrap))
    description = admin.describe_consumer_groups([group])[group].result()
    ids = [m.member_id for m in description.members if m.group_instance_id == instance]
    return ids[0] if ids else None


class TopicReader:
    """Reads a topic from the start with read_committed; decodes with ``codec``."""

    def __init__(self, bootstrap: str, topic: str, codec: Codec, partitions: int = 4) -> None:
        self.codec = codec
        self.consumer = read_only_consumer(bootstrap, purpose="test-reader")
        self.consumer.assign(
            [TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)]
        )
        self.records: list[Any] = []

    def read_until(
        self, done: Callable[[list[Any]], bool], *, timeout_s: float, settle_s: float = 2.0
    ) -> list[Any]:
        """Read until ``done(records)``, then ``settle_s`` more to catch any extra; or timeout."""
        deadline = time.monotonic() + timeout_s
        settled_at: float | None = None
        while time.monotonic() < deadline:
            if settled_at is None and done(self.records):
                settled_at = time.monotonic() + settle_s
            if settled_at is not None and time.monotonic() > settled_at:
                break
            for message in self.consumer.consume(1000, 0.2):
                if message.error() is None:
                    self.records.append(self.codec.decode(message.value()))
        return self.records

    def close(self) -> None:
        """Close the consumer."""
        self.consumer.close()


def lifecycle_events(bootstrap: str, codec: Codec, model: str, kinds: tuple[type, ...]) -> list:
    """Every lifecycle event of ``model`` of the given kinds, read now."""
    reader = TopicReader(bootstrap, LIFECYCLE_TOPIC, codec, partitions=1)
    try:
        reader.read_until(lambda _: False, timeout_s=2.0)
    finally:
        reader.close()
    return [e for e in reader.records if isinstance(e, kinds) and getattr(e, "model", "") == model]


def start_at_log_end(bootstrap_servers: str, group_id: str) -> None:
    """Commit ``group_id`` at the lifecycle log's current end, so history before now is skipped."""
    consumer = Consumer({**client_config(bootstrap_servers), "group.id": group_id})
    try:
        ends = end_offsets(consumer, LIFECYCLE_TOPIC)
        consumer.commit(
            offsets=[TopicPartition(LIFECYCLE_TOPIC, p, end) for p, end in ends.items()],
            asynchronous=False,
        )
    finally:
        consumer.close()


class Bus:
    """The test's side of the broker: publish events, read a model's lifecycle, wait on it."""

    def __init__(self, settings: KafkaSettings, client_id: str) -> None:
        self.settings = settings
        self.codec = build_codec(kafka_schema_store(settings.bootstrap_servers))
        self.publisher = Publisher(settings, self.codec, client_id=client_id, signer=role_signers())

    def publish(self, event: Any) -> None:
        """Put an event on the bus and wait for the broker to have it."""
        self.publisher.publish(event)
        self.publisher.flush()

    def lifecycle(self, model: str) -> list[Any]:
        """Every lifecycle event about ``model`` so far, in log order."""
        return [
            event
            for event in read_events(
                self.settings.bootstrap_servers, LIFECYCLE_TOPIC, self.codec, key=model
            )
            if not isinstance(event, GenericRecord)
        ]

    def wait_for(
        self,
        model: str,
        kind: type,
        count: int = 1,
        *,
        where: Callable[[Any], bool] = lambda _event: True,
        timeout_s: float = 60.0,
    ) -> list[Any]:
        """At least ``count`` events of type ``kind`` about ``model`` matching ``where``."""

        def check() -> list[Any]:
            found = [e for e in self.lifecycle(model) if isinstance(e, kind) and where(e)]
            if len(found) < count:
                raise NotYet(f"{len(found)} {kind.__name__} for {model} so far")
            return found

        return eventually(check, timeout_s)


KAFKA_SCRIPT = str(Path(__file__).resolve().parents[2] / "infra" / "kafka" / "kafka.sh")


def free_port_block(size: int) -> int:
    """The first port of ``size`` consecutive free ports (never the shared brokers' ports),
    from a random place in the range: brokers started at once (other sessions' tests and
    benchmarks on one machine) then rarely race for the same block."""
    blocks = list(range(21_000, 29_000, 50))
    start = random.randrange(len(blocks))
    for base in blocks[start:] + blocks[:start]:
        try:
            for port in range(base, base + size):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no block of free ports between 21000 and 29000")


@dataclass
class DedicatedKafka:
    """A broker (or cluster) of a test's own, started by infra/kafka/kafka.sh on free ports."""

    env: dict[str, str]
    bootstrap: str

    def credentials(self, principal: str) -> dict[str, str]:
        """``principal``'s MODELBUS_* variables on a broker started with security on."""
        path = subprocess.run(
            [KAFKA_SCRIPT, "credentials", principal],
            env=self.env, check=True, capture_output=True, text=True,
        ).stdout.strip()  # fmt: skip
        return read_env_file(Path(path))

    @property
    def ca_file(self) -> Path:
        """The PEM of the CA that signed a sasl_ssl broker's certificate (kafka.sh makes it)."""
        return Path(self.env["MODELBUS_RUN_DIR"]) / f"kafka-{self.env['KAFKA_PORT']}/tls/ca.pem"

    def broker(self, action: str, node: int = 1) -> None:
        """``stop-broker`` (SIGTERM), ``kill-broker`` (SIGKILL) or ``start-broker`` node."""
        subprocess.run([KAFKA_SCRIPT, action, str(node)], env=self.env, check=True)

    def leader_of(self, topic: str, partition: int = 0) -> int:
        """The node id leading ``topic``'s ``partition``."""
        metadata = AdminClient(client_config(self.bootstrap)).list_topics(topic, timeout=10)
        return int(metadata.topics[topic].partitions[partition].leader)

    def transaction_coordinator(self, transactional_id: str) -> int:
        """The node id coordinating ``transactional_id``'s transactions."""
        # The leader of the __transaction_state partition the broker hashes the id to
        # (Java's String.hashCode, Kafka's Utils.abs, 50 partitions by default).
        code = 0
        for char in transactional_id:
            code = (31 * code + ord(char)) & 0xFFFFFFFF
        code = code - (1 << 32) if code >= 1 << 31 else code
        partitions = AdminClient(client_config(self.bootstrap)).list_topics(
            "__transaction_state", timeout=15
        )
        state = partitions.topics["__transaction_state"].partitions
        return int(state[(0 if code == -(1 << 31) else abs(code)) % len(state)].leader)


def read_env_file(path: Path) -> dict[str, str]:
    """The ``export NAME=value`` lines of a credentials file, as a dict."""
    pairs = (line.removeprefix("export ").split("=", 1) for line in path.read_text().splitlines())
    return {name: value for name, value in pairs}


def session_security() -> str:
    """kafka.sh's KAFKA_SECURITY for this process's client settings (``make test`` sets them)."""
    protocol = SecuritySettings().security_protocol
    return {"SASL_PLAINTEXT": "sasl", "SASL_SSL": "sasl_ssl"}.get(protocol, "none")


def _session_passwords(run_dir: Path, security: str, *, tls_asked: bool) -> dict[str, str]:
    """KAFKA_PASSWORDS_FROM naming this session's principal and password, so the test's
    clients (and the services it starts, which inherit its environment) authenticate on the
    new broker as they do on the session's; {} when the session runs unauthenticated."""
    session = SecuritySettings()
    if security == "none" or session.sasl_username is None or session.sasl_password is None:
        return {}
    if (session.security_protocol == "SASL_SSL" or security == "sasl_ssl") and not tls_asked:
        # A new broker makes a CA of its own, which the session's ssl_ca_location cannot name:
        # only a test that asks for sasl_ssl itself knows to use DedicatedKafka.ca_file.
        raise ValueError(
            "brokers a test starts itself run sasl unless the test passes security='sasl_ssl' "
            "(and trusts DedicatedKafka.ca_file): run the suite with TEST_SECURITY=sasl or none"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "session-passwords"
    path.touch(mode=0o600)
    path.write_text(f"{session.sasl_username}={session.sasl_password.get_secret_value()}\n")
    return {"KAFKA_PASSWORDS_FROM": str(path)}


@contextlib.contextmanager
def dedicated_kafka(
    run_dir: Path, brokers: int = 1, *, security: str | None = None
) -> Iterator[DedicatedKafka]:
    """Start a broker (or a cluster of ``brokers``) of one's own; stop it at the end.

    ``security`` is kafka.sh's KAFKA_SECURITY: none, sasl (SCRAM and ACLs) or sasl_ssl; by
    default the session's (``session_security``), with the session's principal and password,
    so the test's client settings reach this broker too. A sasl_ssl broker has a CA of its own
    (``DedicatedKafka.ca_file``), so only a test that passes ``security="sasl_ssl"`` gets one.
    """
    chosen = security or session_security()
    env = {
        **os.environ,
        **_session_passwords(run_dir, chosen, tls_asked=security == "sasl_ssl"),
        "KAFKA_SECURITY": chosen,
        "KAFKA_PORT": str(free_port_block(2 * brokers)),
        "KAFKA_BROKERS": str(brokers),
        "MODELBUS_RUN_DIR": str(run_dir),
        # Several JVMs starting on a loaded 2-core machine can take minutes.
        "KAFKA_START_TIMEOUT_S": os.environ.get("KAFKA_START_TIMEOUT_S", "180"),
    }
    subprocess.run([KAFKA_SCRIPT, "up"], env=env, check=True)
    try:
        bootstrap = subprocess.run(
            [KAFKA_SCRIPT, "bootstrap"], env=env, check=True, capture_output=True, text=True
        ).stdout.strip()
        yield DedicatedKafka(env, bootstrap)
    finally:
        subprocess.run([KAFKA_SCRIPT, "down"], env=env, check=False)

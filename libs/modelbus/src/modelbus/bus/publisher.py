"""Publishing events (confluent-kafka), with the writer schemas published before first use."""

from __future__ import annotations

import threading
from typing import Any, Protocol

from confluent_kafka import KafkaError, Message, Producer

from modelbus.bus.chain import Chain
from modelbus.bus.envelope import FINGERPRINT_HEADER, TYPE_HEADER
from modelbus.bus.security import client_config
from modelbus.bus.topics import LIFECYCLE_TOPIC, SCHEMAS_TOPIC, route
from modelbus.config import KafkaSettings
from modelbus.events import Codec, KnownSchema, SchemaStore
from modelbus.trust.signing import EventSigner


class PublishError(RuntimeError):
    """The broker did not accept one or more messages."""


class EventPublisher(Protocol):
    """What handlers' callers need: publish events and make sure they landed."""

    def publish(
        self, event: Any, *, topic: str | None = None, key: str | bytes | None = None
    ) -> None: ...

    def flush(self, timeout_s: float = 30.0) -> None: ...


class Publisher:
    """Encodes and produces events; ``flush`` raises if any delivery failed.

    With a ``signer``, every message carries its signature headers (topic and value signed).
    """

    def __init__(
        self,
        settings: KafkaSettings,
        codec: Codec,
        *,
        client_id: str,
        extra_config: dict[str, Any] | None = None,
        signer: EventSigner | None = None,
    ) -> None:
        self.codec = codec
        self.signer = signer
        self.producer = Producer(
            {
                **client_config(settings.bootstrap_servers),
                "client.id": client_id,
                "enable.idempotence": True,
                "linger.ms": 5,
                "message.max.bytes": settings.max_message_bytes + 65_536,
                **(extra_config or {}),
            }
        )
        self._published_fingerprints: set[bytes] = set()
        self._errors: list[str] = []
        self._lock = threading.Lock()
        self.chain = Chain(client_id)

    def publish(
        self,
        event: Any,
        *,
        topic: str | None = None,
        key: str | bytes | None = None,
        schema_name: str | None = None,
    ) -> None:
        """Encode ``event`` and produce it to its topic (``route``), or the one given."""
        routed_topic, routed_key = route(event) if topic is None or key is None else (topic, key)
        name = schema_name or event.SCHEMA_NAME
        known = self.codec.store.reader(name)
        if known is not None:
            self.ensure_schema_published(known)
        value = self.codec.encode(event, schema_name=name)
        self.produce(
            topic or routed_topic, key if key is not None else routed_key, value, name, known
        )

    def produce(
        self,
        topic: str,
        key: str | bytes | None,
        value: bytes,
        schema_name: str,
        known: KnownSchema | None = None,
    ) -> None:
        """Produce already-encoded bytes."""
        headers: list[tuple[str, str | bytes | None]] = [(TYPE_HEADER, schema_name.encode())]
        if known is not None:
            headers.append((FINGERPRINT_HEADER, known.fingerprint.hex().encode()))
        if self.signer is not None:
            headers.extend(self.signer.headers(topic, value, schema_name))
        if topic != LIFECYCLE_TOPIC:
            self._produce(topic, key, value, headers)
            return
        raw_key = key.encode() if isinstance(key, str) else key or b""
        with self.chain.lock:  # links are numbered in the order they are produced
            headers.extend(self.chain.link(raw_key, value))
            self._produce(topic, key, value, headers)

    def _produce(
        self,
        topic: str,
        key: str | bytes | None,
        value: bytes,
        headers: list[tuple[str, str | bytes | None]],
    ) -> None:
        while True:
            try:
                self.producer.produce(
                    topic, value, key, headers=headers, on_delivery=self._delivered
                )
                break
            except BufferError:
                self.producer.poll(0.05)  # local queue full: let deliveries drain
        self.producer.poll(0)

    def ensure_schema_published(self, known: KnownSchema) -> None:
        """Publish a writer schema to the schemas topic once, and wait for it, before use."""
        if known.fingerprint in self._published_fingerprints:
            return
        self.producer.produce(
            SCHEMAS_TOPIC,
            SchemaStore.to_json(known),
            known.fingerprint.hex(),
            on_delivery=self._delivered,
        )
        self.flush()
        self._published_fingerprints.add(known.fingerprint)

    def publish_all_schemas(self) -> None:
        """Publish every schema this process knows (writers do this at start)."""
        for known in self.codec.store.all():
            self.ensure_schema_published(known)

    def flush(self, timeout_s: float = 30.0) -> None:
        """Wait for every produced message; raise PublishError naming the failures."""
        remaining = self.producer.flush(timeout_s)
        with self._lock:
            errors, self._errors = self._errors, []
        if remaining:
            errors.append(f"{remaining} messages still unsent after {timeout_s}s")
        if errors:
            raise PublishError("; ".join(errors[:5]) + (" ..." if len(errors) > 5 else ""))

    def _delivered(self, error: KafkaError | None, message: Message) -> None:
        if error is not None and _schema_not_ours(error, message):
            return
        if error is not None:
            with self._lock:
                self._errors.append(f"{message.topic()}: {error.str()}")


def _schema_not_ours(error: KafkaError, message: Message) -> bool:
    """A producer principal may not write schemas (security on): their owners, the services
    and `modelbus topics create`, publish them, and a reader dead-letters a fingerprint that
    nobody published."""
    return (
        message.topic() == SCHEMAS_TOPIC and error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    )

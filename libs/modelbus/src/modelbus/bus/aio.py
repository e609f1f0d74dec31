"""The asyncio flavour of the bus (aiokafka), for control-plane services."""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from modelbus.bus.chain import Chain
from modelbus.bus.dispatch import Dispatcher
from modelbus.bus.envelope import FINGERPRINT_HEADER, TYPE_HEADER, Envelope, headers_to_dict
from modelbus.bus.security import aiokafka_options
from modelbus.bus.topics import LIFECYCLE_TOPIC, SCHEMAS_TOPIC, dlq_topic_for, route
from modelbus.config import KafkaSettings
from modelbus.events import Codec, SchemaStore
from modelbus.trust.signing import EventSigner

log = structlog.get_logger(__name__)


class AsyncPublisher:
    """aiokafka twin of Publisher: writer schemas first, then the events."""

    def __init__(
        self,
        settings: KafkaSettings,
        codec: Codec,
        *,
        client_id: str,
        signer: EventSigner | None = None,
    ) -> None:
        self.codec = codec
        self.signer = signer
        self.producer = AIOKafkaProducer(
            bootstrap_servers=settings.bootstrap_servers,
            **aiokafka_options(),
            client_id=client_id,
            enable_idempotence=True,
            linger_ms=5,
        )
        self._published_fingerprints: set[bytes] = set()
        self.chain = Chain(client_id)
        self._chain_lock = asyncio.Lock()

    async def start(self) -> None:
        """Connect."""
        await self.producer.start()

    async def stop(self) -> None:
        """Flush and disconnect."""
        await self.producer.stop()

    async def publish(
        self, event: Any, *, topic: str | None = None, key: str | bytes | None = None
    ) -> None:
        """Encode ``event`` and wait until the broker has it."""
        routed_topic, routed_key = route(event) if topic is None or key is None else (topic, key)
        known = self.codec.store.reader(event.SCHEMA_NAME)
        assert known is not None, f"{event.SCHEMA_NAME} is not a known schema"
        if known.fingerprint not in self._published_fingerprints:
            await self.producer.send_and_wait(
                SCHEMAS_TOPIC, SchemaStore.to_json(known), key=known.fingerprint.hex().encode()
            )
            self._published_fingerprints.add(known.fingerprint)
        chosen_key = key if key is not None else routed_key
        raw_key = chosen_key.encode() if isinstance(chosen_key, str) else chosen_key
        value = self.codec.encode_record(event.to_avro(), known)
        headers = [
            (TYPE_HEADER, known.name.encode()),
            (FINGERPRINT_HEADER, known.fingerprint.hex().encode()),
        ]
        destination = topic or routed_topic
        if self.signer is not None:
            headers += self.signer.headers(destination, value, known.name)
        if destination != LIFECYCLE_TOPIC:
            await self.producer.send_and_wait(destination, value, key=raw_key, headers=headers)
            return
        async with self._chain_lock:  # links are numbered in the order they are produced
            headers += self.chain.link(raw_key or b"", value)
            await self.producer.send_and_wait(destination, value, key=raw_key, headers=headers)


class AsyncConsumerLoop:
    """aiokafka twin of ConsumerLoop, sharing its Dispatcher: same DLQ, same guarantees."""

    def __init__(
        self,
        settings: KafkaSettings,
        *,
        group_id: str,
        topics: list[str],
        dispatcher: Dispatcher,
        publisher: AsyncPublisher,
        from_beginning: bool = True,
    ) -> None:
        self.dispatcher = dispatcher
        self.publisher = publisher
        self.consumer = AIOKafkaConsumer(
            *topics,
            bootstrap_servers=settings.bootstrap_servers,
            **aiokafka_options(),
            group_id=group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest" if from_beginning else "latest",
            isolation_level="read_committed",
        )
        self.processed = 0
        self.dead_lettered = 0

    async def start(self) -> None:
        """Join the group."""
        await self.consumer.start()

    async def stop(self) -> None:
        """Leave the group."""
        await self.consumer.stop()

    async def poll_once(self, timeout_ms: int = 500) -> int:
        """Process one batch; returns how many messages it held."""
        batches = await self.consumer.getmany(timeout_ms=timeout_ms, max_records=500)
        count = 0
        for partition, records in batches.items():
            for record in records:
                envelope = Envelope(
                    topic=record.topic,
                    value=record.value,
                    key=record.key,
                    headers=headers_to_dict(list(record.headers)),
                    partition=record.partition,
                    offset=record.offset,
                    timestamp_ms=record.timestamp,
                )
                # Handlers may block (database, files): keep the event loop free.
                outcome = await asyncio.to_thread(self.dispatcher.dispatch, envelope)
                for event in outcome.events:
                    await self.publisher.publish(event)
                if outcome.dead_letter is not None:
                    await self.publisher.publish(
                        outcome.dead_letter,
                        topic=dlq_topic_for(record.topic),
                        key=record.key or b"",
                    )
                    self.dead_lettered += 1
                self.processed += 1
                count += 1
            if records:
                await self.consumer.commit({partition: records[-1].offset + 1})
        return count

    async def run(self, stop: asyncio.Event) -> None:
        """Loop until ``stop`` is set."""
        while not stop.is_set():
            await self.poll_once()


__all__ = ["AsyncConsumerLoop", "AsyncPublisher"]

"""The exactly-once loop: a micro-batch, its outputs and its offsets in one transaction."""

from __future__ import annotations

import threading

import structlog
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from modelbus.bus.topics import data_topic
from modelbus_inference.config import Settings
from modelbus_inference.predict import BatchPredictor, Incoming
from modelbus_inference.serving import ModelManager
from modelbus_inference.transaction import TransactionalWriter

log = structlog.get_logger(__name__)


def consumer_config(settings: Settings) -> dict[str, object]:
    """The requests consumer: static member of the model's group, reading committed data only."""
    return {
        "bootstrap.servers": settings.kafka.bootstrap_servers,
        "group.id": settings.consumer_group,
        # Static membership: a restarted worker takes its slot back with no rebalance.
        "group.instance.id": settings.worker_name,
        "session.timeout.ms": settings.session_timeout_ms,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "partition.assignment.strategy": "range",
    }


def producer_config(settings: Settings) -> dict[str, object]:
    """The transactional producer; its id is stable per worker slot so a restart fences a zombie."""
    return {
        "bootstrap.servers": settings.kafka.bootstrap_servers,
        "transactional.id": settings.worker_name,
        "transaction.timeout.ms": settings.transaction_timeout_ms,
        "enable.idempotence": True,
        "linger.ms": 2,
        # The next transaction's AddOffsetsToTxn meets CONCURRENT_TRANSACTIONS while the
        # broker still writes the last one's markers; the default 100 ms retry backoff would
        # then cost ~100 ms per batch.
        "retry.backoff.ms": 2,
        "retry.backoff.max.ms": 10,
        "message.max.bytes": settings.kafka.max_message_bytes + 65_536,
    }


class StreamLoop:
    """consume -> BatchPredictor -> TransactionalWriter (outputs + offsets, one transaction)."""

    def __init__(self, settings: Settings, predictor: BatchPredictor, models: ModelManager) -> None:
        self.settings = settings
        self.predictor = predictor
        self.models = models
        self.topic = data_topic(settings.model, "requests")
        self.consumer = Consumer(consumer_config(settings))
        self.producer = Producer(producer_config(settings))
        self.writer = TransactionalWriter(
            self.producer,
            worker_name=settings.worker_name,
            on_abort=predictor.metrics.transactions_aborted.labels(settings.model).inc,
        )
        self.batches = 0
        self.processed = 0

    def start(self) -> None:
        """Fence any previous instance of this slot (aborting its open transaction), subscribe."""
        self.producer.init_transactions(30)
        self.consumer.subscribe([self.topic], on_revoke=self._on_revoke)

    def run(self, stop: threading.Event) -> None:
        """Loop until ``stop`` is set."""
        try:
            while not stop.is_set():
                self.run_once()
        finally:
            self.close()

    def run_once(self) -> int:
        """Score one micro-batch and hand it to its transaction; returns its request count."""
        messages = self.consumer.consume(
            self.settings.max_batch_size, self.settings.max_wait_ms / 1000 or 0.001
        )
        batch: list[Incoming] = []
        for message in messages:
            error = message.error()
            if error is not None:
                if error.fatal():
                    raise KafkaException(error)
                if error.code() != KafkaError._PARTITION_EOF:
                    log.warning("consumer error", error=error.str())
                continue
            batch.append(
                Incoming(
                    self.topic,
                    message.partition(),  # type: ignore[arg-type]  # set on every message
                    message.offset(),  # type: ignore[arg-type]
                    message.key(),
                    message.value(),
                )
            )
        if not batch:
            self._rewind(self.writer.settle() or {})
            return 0
        serving = self.models.serving
        assert serving is not None, "the stream starts only once a model is served"
        outputs = self.predictor.predict(batch, serving)
        next_offsets: dict[tuple[str, int], int] = {}
        first_offsets: dict[tuple[str, int], int] = {}
        for request in batch:
            where = (request.topic, request.partition)
            next_offsets[where] = request.offset + 1
            first_offsets.setdefault(where, request.offset)
        aborted = self.writer.settle()
        if aborted is not None:
            # The previous batch's transaction aborted: replay it and this one, in order.
            for where, offset in first_offsets.items():
                aborted[where] = min(offset, aborted.get(where, offset))
            self._rewind(aborted)
            return 0
        self.writer.submit(
            outputs,
            [TopicPartition(t, p, o) for (t, p), o in next_offsets.items()],
            first_offsets,
            self.consumer.consumer_group_metadata(),
        )
        self.batches += 1
        self.processed += len(batch)
        return len(batch)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # The open transaction must end before the partitions move; an aborted one needs no
        # rewind: the next owner starts from the committed offsets.
        self.writer.settle()

    def _rewind(self, first_offsets: dict[tuple[str, int], int]) -> None:
        for (topic, partition), offset in first_offsets.items():
            try:
                self.consumer.seek(TopicPartition(topic, partition, offset))
            except KafkaException as error:
                # Not ours any more after a rebalance: its new owner resumes from the commit.
                log.info("cannot rewind a partition", partition=partition, error=str(error))

    def close(self) -> None:
        """Finish the open transaction, leave the group, let the producer go."""
        try:
            self.writer.close()
        finally:
            self.consumer.close()
            self.producer.flush(10)

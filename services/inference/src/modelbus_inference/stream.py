"""The exactly-once loop: a micro-batch, its outputs and its offsets in one transaction."""

from __future__ import annotations

import threading
import time

import structlog
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from modelbus.bus.topics import data_topic
from modelbus_inference.config import Settings
from modelbus_inference.predict import BatchPredictor, Incoming
from modelbus_inference.serving import ModelManager

log = structlog.get_logger(__name__)


class Fenced(RuntimeError):
    """Another instance took over this worker's transactional id or partitions; stop."""


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
    """consume -> BatchPredictor -> produce + send_offsets_to_transaction -> commit."""

    def __init__(self, settings: Settings, predictor: BatchPredictor, models: ModelManager) -> None:
        self.settings = settings
        self.predictor = predictor
        self.models = models
        self.topic = data_topic(settings.model, "requests")
        self.consumer = Consumer(consumer_config(settings))
        self.producer = Producer(producer_config(settings))
        self.batches = 0
        self.processed = 0

    def start(self) -> None:
        """Fence any previous instance of this slot (aborting its open transaction), subscribe."""
        self.producer.init_transactions(30)
        self.consumer.subscribe([self.topic])

    def run(self, stop: threading.Event) -> None:
        """Loop until ``stop`` is set."""
        try:
            while not stop.is_set():
                self.run_once()
        finally:
            self.close()

    def run_once(self) -> int:
        """One micro-batch in one transaction; returns how many requests it held."""
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
            return 0
        serving = self.models.serving
        assert serving is not None, "the stream starts only once a model is served"
        outputs = self.predictor.predict(batch, serving)
        self._commit(batch, outputs)
        self.batches += 1
        self.processed += len(batch)
        return len(batch)

    def _commit(self, batch: list[Incoming], outputs: list) -> None:
        next_offsets: dict[int, int] = {}
        first_offsets: dict[int, int] = {}
        for message in batch:
            next_offsets[message.partition] = message.offset + 1
            first_offsets.setdefault(message.partition, message.offset)
        offsets = [TopicPartition(self.topic, p, o) for p, o in next_offsets.items()]
        try:
            self.producer.begin_transaction()
            produce = self.producer.produce
            for output in outputs:
                while True:
                    try:
                        produce(output.topic, output.value, output.key, headers=output.headers)
                        break
                    except BufferError:
                        self.producer.poll(0.01)
            self.producer.send_offsets_to_transaction(
                offsets, self.consumer.consumer_group_metadata(), 30
            )
            self._commit_with_retries()
        except KafkaException as exception:
            error = exception.args[0]
            if isinstance(error, KafkaError) and error.txn_requires_abort():
                log.warning(
                    "aborting transaction; the batch will be reprocessed", error=error.str()
                )
                self.predictor.metrics.transactions_aborted.labels(self.settings.model).inc()
                self.producer.abort_transaction(30)
                self._rewind(first_offsets)
                return
            if isinstance(error, KafkaError) and error.fatal():
                raise Fenced(f"{self.settings.worker_name}: {error.str()}") from exception
            raise

    def _commit_with_retries(self) -> None:
        deadline = time.monotonic() + 60
        while True:
            try:
                self.producer.commit_transaction(30)
                return
            except KafkaException as exception:
                error = exception.args[0]
                if not (isinstance(error, KafkaError) and error.retriable()):
                    raise
                if time.monotonic() > deadline:
                    raise
                log.warning("retrying transaction commit", error=error.str())

    def _rewind(self, first_offsets: dict[int, int]) -> None:
        for partition, offset in first_offsets.items():
            try:
                self.consumer.seek(TopicPartition(self.topic, partition, offset))
            except KafkaException as error:
                # Not ours any more after a rebalance: its new owner resumes from the commit.
                log.info("cannot rewind a partition", partition=partition, error=str(error))

    def close(self) -> None:
        """Leave the group and let the producer go (nothing is left open: each batch commits)."""
        try:
            self.consumer.close()
        finally:
            self.producer.flush(10)

"""The stream loop: consume a micro-batch, score it, hand it to the delivery mode's writer."""

from __future__ import annotations

import threading
import time

import structlog
from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from modelbus.bus.security import client_config
from modelbus.bus.topics import data_topic
from modelbus_inference.config import Settings
from modelbus_inference.delivery import AtLeastOnceWriter
from modelbus_inference.predict import BatchPredictor, Incoming, Outgoing
from modelbus_inference.serving import ModelManager, Serving
from modelbus_inference.transaction import Fenced, Stuck, TransactionalWriter
from modelbus_inference.writer import BatchWriter

log = structlog.get_logger(__name__)

FILL_SLICE_S = 0.002
"""How long one consume() waits while a batch grows behind the one being written: how soon
the loop notices that the writer is free."""

FILL_SCORE_AT = 64
"""While a batch grows behind the one being written, its unscored requests are scored once
this many have come, so a long commit does not leave a large batch to score after it."""


def consumer_config(settings: Settings) -> dict[str, object]:
    """The requests consumer: static member of the model's group, reading committed data only."""
    return {
        **client_config(settings.kafka.bootstrap_servers),
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
        **client_config(settings.kafka.bootstrap_servers),
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


def idempotent_producer_config(settings: Settings) -> dict[str, object]:
    """The at-least-once producer: idempotent (its retries write no duplicates), no transactions."""
    config = producer_config(settings)
    del config["transactional.id"], config["transaction.timeout.ms"]
    return config


class StreamLoop:
    """consume -> BatchPredictor -> the delivery mode's writer (outputs, then offsets).

    ``exactly_once``: a TransactionalWriter puts a batch's outputs and offsets in one
    transaction. ``at_least_once``: an AtLeastOnceWriter commits the offsets once every output
    is delivered. A fatal, stuck or unrecoverable Kafka error never ends the loop: the producer
    and consumer are dropped and built again, and the new consumer resumes from the committed
    offsets. Exactly-once: the new producer's ``init_transactions`` fences the old one and
    aborts its open transaction, so each request still gets exactly one committed result.
    At-least-once: the uncommitted tail is scored again, so a request may be answered twice.
    """

    def __init__(self, settings: Settings, predictor: BatchPredictor, models: ModelManager) -> None:
        self.settings = settings
        self.predictor = predictor
        self.models = models
        self.topic = data_topic(settings.model, "requests")
        self.metrics = predictor.metrics
        self.progress = predictor.metrics.progress
        self.progress.stall_after_s = settings.stall_after_s
        self.observe_stage = self.metrics.stage_observer(settings.model)
        self.consumer: Consumer | None = None
        self.producer: Producer | None = None
        self.writer: BatchWriter = self._new_writer(None, None)
        self._broken: BaseException | None = None
        # The consumer's group metadata (member id, generation) for the transactions' offsets,
        # fetched once per assignment: each fetch is a round trip to librdkafka's own thread,
        # and on 2 busy cores that thread waits for one. A rebalance, a revoke and an aborted
        # transaction drop it. One gone stale anyway the broker refuses (ILLEGAL_GENERATION,
        # an abortable error): its transaction aborts and its batch is replayed.
        self._group_metadata: object | None = None
        self.batches = 0
        self.processed = 0
        self.rebuilds = 0

    def start(self, stop: threading.Event | None = None) -> None:
        """Fence any previous instance of this slot (aborting its open transaction), subscribe.

        Retries with backoff until the broker answers or ``stop`` is set.
        """
        self._connect(stop or threading.Event())

    def run(self, stop: threading.Event) -> None:
        """Loop until ``stop`` is set, rebuilding the Kafka clients whenever they fail."""
        try:
            while not stop.is_set():
                if self.consumer is None and not self._connect(stop):
                    break
                try:
                    self.run_once()
                except (KafkaException, Fenced, Stuck) as error:
                    self._rebuild(error)
        finally:
            self.close()

    def run_once(self) -> int:
        """Score one micro-batch and hand it to its transaction; returns its request count."""
        consumer = self.consumer
        assert consumer is not None, "start() first"
        started = time.perf_counter()
        messages = self._fetch(consumer)
        fetched = time.perf_counter()
        batch, troubled = self._incoming(messages)
        if not batch:
            was_open = self.writer.pending
            self._rewind(self._settle() or {})
            if not troubled and not was_open:
                self.progress.idle()
            return 0
        serving = self.models.serving
        assert serving is not None, "the stream starts only once a model is served"
        # While the previous batch is still being written, this one keeps growing: a request
        # that arrives meanwhile rides in the next transaction instead of waiting for the one
        # after it. What arrives is scored in chunks of FILL_SCORE_AT and, the rest, once the
        # writer is free. A predict() call has a fixed cost (the forward pass, metrics) that
        # slices of a few requests each paid many times per batch: scored per 2 ms slice, the
        # score stage took 7.5-15 ms per batch at 1,700-3,400 requests/s, scored once 3 ms.
        # A writer stuck past the deadline is settle()'s to report (Stuck), so the growing
        # stops there too.
        outputs: list[Outgoing] = []
        unscored = batch
        scoring_s = 0.0
        give_up_at = fetched + self.settings.kafka_deadline_s
        while (
            self.writer.busy
            and len(batch) < self.settings.max_batch_size
            and time.perf_counter() < give_up_at
        ):
            if len(unscored) >= FILL_SCORE_AT:
                scoring_s += self._score(unscored, serving, outputs)
                unscored = []
            more, _ = self._incoming(
                consumer.consume(self.settings.max_batch_size - len(batch), FILL_SLICE_S)
            )
            batch = batch + more
            unscored = unscored + more
        if unscored:
            scoring_s += self._score(unscored, serving, outputs)
        filled = time.perf_counter()
        next_offsets: dict[tuple[str, int], int] = {}
        first_offsets: dict[tuple[str, int], int] = {}
        for request in batch:
            where = (request.topic, request.partition)
            next_offsets[where] = request.offset + 1
            first_offsets.setdefault(where, request.offset)
        aborted = self._settle()
        stage = self.observe_stage
        stage("fetch", (fetched - started) * 1000)
        stage("score", scoring_s * 1000)
        stage("fill", (filled - fetched - scoring_s) * 1000)
        stage("wait", (time.perf_counter() - filled) * 1000)
        if aborted is not None:
            # The previous batch's transaction aborted: replay it and this one, in order.
            for where, offset in first_offsets.items():
                aborted[where] = min(offset, aborted.get(where, offset))
            self._group_metadata = None
            self._rewind(aborted)
            return 0
        self.writer.submit(
            outputs,
            [TopicPartition(t, p, o) for (t, p), o in next_offsets.items()],
            first_offsets,
            self._metadata(consumer) if self.writer.needs_group_metadata else None,
        )
        self.batches += 1
        self.processed += len(batch)
        return len(batch)

    def _metadata(self, consumer: Consumer) -> object:
        """The group metadata for this batch's transaction (see ``_group_metadata``)."""
        if self._group_metadata is None:
            self._group_metadata = consumer.consumer_group_metadata()
        return self._group_metadata

    def _score(self, batch: list[Incoming], serving: Serving, outputs: list[Outgoing]) -> float:
        """Append ``batch``'s outputs to ``outputs``; returns the seconds it took."""
        began = time.perf_counter()
        outputs += self.predictor.predict(batch, serving)
        return time.perf_counter() - began

    def _incoming(self, messages: list[Message]) -> tuple[list[Incoming], bool]:
        """The requests among ``messages``, and whether a consumer error came with them.

        Raises ``KafkaException`` on a fatal one (the caller rebuilds its clients) and hands on
        one the writer thread left behind (``_broken``, set by a revoke).
        """
        if self._broken is not None:
            broken, self._broken = self._broken, None
            raise broken
        batch: list[Incoming] = []
        troubled = False
        for message in messages:
            error = message.error()
            if error is not None:
                # A fenced static member reports code _FATAL on a message without fatal() set.
                if error.fatal() or error.code() == KafkaError._FATAL:
                    raise KafkaException(error)
                if error.code() != KafkaError._PARTITION_EOF:
                    troubled = True
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
        return batch, troubled

    def _fetch(self, consumer: Consumer) -> list[Message]:
        """Wait up to ``max_wait_ms`` for a first message, then take up to a batch: what has
        arrived, or what arrives within ``batch_linger_ms``."""
        settings = self.settings
        messages = consumer.consume(1, settings.max_wait_ms / 1000 or 0.001)
        if messages and settings.max_batch_size > 1:
            messages += consumer.consume(settings.max_batch_size - 1, settings.linger_s)
        return messages

    def _settle(self, *, final: bool = False) -> dict[tuple[str, int], int] | None:
        return self.writer.settle(final=final)

    def _new_writer(self, producer: Producer | None, consumer: Consumer | None) -> BatchWriter:
        # None only until the first _connect.
        model, settings = self.settings.model, self.settings
        if settings.delivery == "at_least_once":
            return AtLeastOnceWriter(
                producer,  # type: ignore[arg-type]
                consumer=consumer,  # type: ignore[arg-type]
                worker_name=settings.worker_name,
                on_abort=self.metrics.deliveries_failed.labels(model).inc,
                on_commit=self.progress.committed,
                deadline_s=settings.kafka_deadline_s,
                on_stage=self.observe_stage,
            )
        return TransactionalWriter(
            producer,  # type: ignore[arg-type]
            worker_name=settings.worker_name,
            on_abort=self.metrics.transactions_aborted.labels(model).inc,
            on_commit=self.progress.committed,
            deadline_s=settings.kafka_deadline_s,
            on_stage=self.observe_stage,
        )

    def _offsets_committed(
        self, error: KafkaError | None, partitions: list[TopicPartition]
    ) -> None:
        if isinstance(self.writer, AtLeastOnceWriter):
            self.writer.offsets_committed(error, partitions)

    def _connect(self, stop: threading.Event) -> bool:
        """Build a producer (init_transactions when exactly-once) and a consumer; False if
        stopped first."""
        backoff = 0.1
        transactional = self.settings.delivery == "exactly_once"
        while not stop.is_set():
            if not transactional:
                producer = Producer(idempotent_producer_config(self.settings))
                break
            producer = Producer(producer_config(self.settings))
            try:
                producer.init_transactions(self.settings.kafka_deadline_s)
                break
            except KafkaException as error:
                log.warning("cannot start transactions yet; retrying", error=str(error))
                _close_in_background(None, producer)
                stop.wait(backoff)
                backoff = min(backoff * 2, self.settings.rebuild_backoff_max_s)
        else:
            return False
        self.producer = producer
        self.consumer = Consumer(
            {**consumer_config(self.settings), "on_commit": self._offsets_committed}
        )
        self.writer = self._new_writer(producer, self.consumer)
        self._group_metadata = None
        self.consumer.subscribe([self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke)
        self.progress.streaming()
        return True

    def _rebuild(self, error: BaseException) -> None:
        """Drop both clients (closed in the background: a dead broker must not block us)."""
        log.warning("rebuilding the Kafka clients", error=str(error), kind=type(error).__name__)
        self.rebuilds += 1
        self.metrics.client_rebuilds.labels(self.settings.model).inc()
        self.progress.rebuilding(f"{type(error).__name__}: {error}")
        self.writer.abandon()
        _close_in_background(self.consumer, self.producer)
        self.consumer = None
        self.producer = None

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # A new generation of the group: the next transaction fetches its metadata afresh.
        # (The client assigns ``partitions`` itself once this returns.)
        if consumer is self.consumer:
            self._group_metadata = None

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # The batch in flight must be committed before the partitions move; an aborted one
        # needs no rewind: the next owner starts from the committed offsets.
        if consumer is not self.consumer:
            return  # a dropped consumer closing in the background
        self._group_metadata = None
        try:
            self._settle(final=True)
        except (KafkaException, Fenced, Stuck) as error:
            self._broken = error  # raised on the stream thread after consume() returns

    def _rewind(self, first_offsets: dict[tuple[str, int], int]) -> None:
        assert self.consumer is not None
        for (topic, partition), offset in first_offsets.items():
            try:
                self.consumer.seek(TopicPartition(topic, partition, offset))
            except KafkaException as error:
                # Not ours any more after a rebalance: its new owner resumes from the commit.
                log.info("cannot rewind a partition", partition=partition, error=str(error))

    def close(self) -> None:
        """Finish the open transaction if it can, leave the group, let the clients go."""
        try:
            if self.consumer is not None:
                self._settle(final=True)
        except (KafkaException, Fenced, Stuck) as error:
            log.warning("open transaction left to the broker to abort", error=str(error))
        finally:
            self.writer.stop()
            consumer, producer = self.consumer, self.producer
            self.consumer = self.producer = None
            closing = _close_in_background(consumer, producer)
            closing.join(self.settings.kafka_deadline_s)


def _close_quietly(consumer: Consumer | None, producer: Producer | None) -> None:
    try:
        if consumer is not None:
            consumer.close()
    except (KafkaException, RuntimeError) as error:
        log.info("consumer closed with an error", error=str(error))
    if producer is not None:
        producer.flush(5)


def _close_in_background(consumer: Consumer | None, producer: Producer | None) -> threading.Thread:
    thread = threading.Thread(
        target=_close_quietly, args=(consumer, producer), name="kafka-close", daemon=True
    )
    thread.start()
    return thread

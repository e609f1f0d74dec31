"""Delivery modes: the at-least-once writer commits offsets only after every output is delivered;
both writers report progress only for committed offsets (fakes)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from pydantic import ValidationError

from modelbus_inference.config import Settings
from modelbus_inference.delivery import AtLeastOnceWriter
from modelbus_inference.predict import Outgoing
from modelbus_inference.stream import idempotent_producer_config, producer_config
from modelbus_inference.transaction import TransactionalWriter
from modelbus_inference.writer import Fenced, Stuck

TOPIC = "modelbus.credit.requests"
OUT = [
    Outgoing("modelbus.credit.predictions", f"r{n}".encode(), f"v{n}".encode(), [])
    for n in range(3)
]
FIRST = {(TOPIC, 2): 40}
OFFSETS = [TopicPartition(TOPIC, 2, 43)]


class FakeProducer:
    """Queues what is produced; each flush delivers ``per_flush`` reports, failing those told to."""

    def __init__(self, *, per_flush: int = 1, failures: dict[bytes, KafkaError] | None = None):
        self.per_flush = per_flush
        self.failures = failures or {}
        self.queue: list[tuple[bytes, Any]] = []
        self.delivered: list[bytes] = []
        self.flushes = 0

    def produce(self, topic, value, key, headers=None, on_delivery=None) -> None:  # type: ignore[no-untyped-def,unused-ignore]
        self.queue.append((value, on_delivery))

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float) -> int:
        self.flushes += 1
        for value, on_delivery in self.queue[: self.per_flush]:
            error = self.failures.get(value)
            if error is None:
                self.delivered.append(value)
            on_delivery(error, None)
        del self.queue[: self.per_flush]
        return len(self.queue)


class FakeConsumer:
    """Records each commit with the outputs delivered when it was made."""

    def __init__(self, producer: FakeProducer, failure: KafkaError | None = None) -> None:
        self.producer = producer
        self.failure = failure
        self.commits: list[tuple[list[tuple[str, int, int]], bool, list[bytes]]] = []

    def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> list[TopicPartition]:
        if self.failure is not None:
            raise KafkaException(self.failure)
        offered = [(tp.topic, tp.partition, tp.offset) for tp in offsets]
        self.commits.append((offered, asynchronous, list(self.producer.delivered)))
        return offsets


def _writer(producer: FakeProducer, consumer: FakeConsumer, **kwargs: Any) -> AtLeastOnceWriter:
    return AtLeastOnceWriter(
        producer,  # type: ignore[arg-type]
        consumer=consumer,  # type: ignore[arg-type]
        worker_name="w-0",
        on_abort=kwargs.pop("on_abort", lambda: None),
        **kwargs,
    )


def test_offsets_are_committed_only_after_every_output_of_the_batch_is_delivered() -> None:
    producer = FakeProducer(per_flush=1)
    consumer = FakeConsumer(producer)
    writer = _writer(producer, consumer)
    writer.submit(OUT, OFFSETS, FIRST, object())
    assert writer.settle() is None
    assert producer.flushes == 3  # one report per flush: the writer waited for all three
    assert consumer.commits == [([(TOPIC, 2, 43)], True, [b"v0", b"v1", b"v2"])]


def test_a_failed_delivery_commits_nothing_and_the_batch_is_read_again() -> None:
    failed = []
    producer = FakeProducer(
        per_flush=3, failures={b"v1": KafkaError(KafkaError._MSG_TIMED_OUT, "timed out")}
    )
    consumer = FakeConsumer(producer)
    writer = _writer(producer, consumer, on_abort=lambda: failed.append(1))
    writer.submit(OUT, OFFSETS, FIRST, object())
    assert writer.settle() == FIRST
    assert consumer.commits == []
    assert failed == [1]
    assert writer.settle(final=True) is None  # nothing written: nothing to make sure of
    assert consumer.commits == []


def test_a_fatal_delivery_error_asks_for_a_rebuild_and_commits_nothing() -> None:
    fatal = KafkaError(KafkaError._FATAL, "producer fenced", fatal=True)
    producer = FakeProducer(per_flush=3, failures={b"v0": fatal})
    consumer = FakeConsumer(producer)
    writer = _writer(producer, consumer)
    writer.submit(OUT, OFFSETS, FIRST, object())
    with pytest.raises(Fenced, match="producer fenced"):
        writer.settle()
    assert consumer.commits == []


def test_deliveries_not_reported_by_the_deadline_are_stuck_and_commit_nothing() -> None:
    producer = FakeProducer(per_flush=0)
    consumer = FakeConsumer(producer)
    writer = _writer(producer, consumer, deadline_s=0.2)
    writer.submit(OUT, OFFSETS, FIRST, object())
    with pytest.raises(Stuck, match="w-0: delivery past its deadline"):
        writer.settle()
    assert consumer.commits == []


def test_a_final_settle_commits_synchronously_and_reports_the_commit() -> None:
    commits = []
    producer = FakeProducer(per_flush=3)
    consumer = FakeConsumer(producer)
    writer = _writer(producer, consumer, on_commit=lambda: commits.append(1))
    writer.submit(OUT, OFFSETS, FIRST, object())
    assert writer.settle(final=True) is None
    assert consumer.commits == [([(TOPIC, 2, 43)], False, [b"v0", b"v1", b"v2"])]
    assert commits == [1]


def test_a_final_settle_with_nothing_in_flight_makes_sure_the_last_commit_landed_once() -> None:
    producer = FakeProducer(per_flush=3)
    consumer = FakeConsumer(producer)
    writer = _writer(producer, consumer)
    writer.submit(OUT, OFFSETS, FIRST, object())
    writer.settle()
    writer.settle(final=True)
    writer.settle(final=True)  # the partitions may be another worker's now: never again
    assert [(offsets, asynchronous) for offsets, asynchronous, _ in consumer.commits] == [
        ([(TOPIC, 2, 43)], True),
        ([(TOPIC, 2, 43)], False),
    ]


def test_batches_delivered_while_a_commit_is_in_flight_go_out_together_in_the_next_one() -> None:
    producer = FakeProducer(per_flush=3)
    consumer = FakeConsumer(producer)
    writer = _writer(producer, consumer)
    for offsets in ([TopicPartition(TOPIC, 2, 43)], [TopicPartition(TOPIC, 2, 50)]):
        writer.submit(OUT, offsets, FIRST, object())
        assert writer.settle() is None
    writer.submit(OUT, [TopicPartition(TOPIC, 1, 7)], {(TOPIC, 1): 5}, object())
    assert writer.settle() is None
    # The first commit is unanswered: the next two batches wait for it.
    assert [(offsets, asynchronous) for offsets, asynchronous, _ in consumer.commits] == [
        ([(TOPIC, 2, 43)], True)
    ]
    writer.offsets_committed(None, [TopicPartition(TOPIC, 2, 43)])
    assert writer.settle() is None  # an idle poll sends what waited, as one commit
    writer.settle()  # nothing new: nothing sent
    assert [(offsets, asynchronous) for offsets, asynchronous, _ in consumer.commits] == [
        ([(TOPIC, 2, 43)], True),
        ([(TOPIC, 2, 50), (TOPIC, 1, 7)], True),
    ]


def test_an_asynchronous_commit_counts_as_progress_only_when_every_partition_committed() -> None:
    commits = []
    producer = FakeProducer()
    writer = _writer(producer, FakeConsumer(producer), on_commit=lambda: commits.append(1))
    writer.offsets_committed(None, [TopicPartition(TOPIC, 2, 43)])
    # A partition's own error, as librdkafka reports it (TopicPartition.error is read-only here).
    failed = SimpleNamespace(error=KafkaError(KafkaError.REBALANCE_IN_PROGRESS))
    writer.offsets_committed(None, [TopicPartition(TOPIC, 2, 44), failed])  # type: ignore[list-item]
    writer.offsets_committed(KafkaError(KafkaError._TRANSPORT), [])
    assert commits == [1]


def test_a_commit_the_group_moved_on_from_is_left_to_the_partitions_next_owner() -> None:
    producer = FakeProducer(per_flush=3)
    consumer = FakeConsumer(producer, failure=KafkaError(KafkaError.ILLEGAL_GENERATION))
    writer = _writer(producer, consumer)
    writer.submit(OUT, OFFSETS, FIRST, object())
    assert writer.settle() is None
    assert producer.delivered == [b"v0", b"v1", b"v2"]


def test_a_fenced_consumer_on_commit_asks_for_a_rebuild() -> None:
    producer = FakeProducer(per_flush=3)
    fenced = KafkaError(KafkaError.FENCED_INSTANCE_ID, "fenced", fatal=True)
    writer = _writer(producer, FakeConsumer(producer, failure=fenced))
    writer.submit(OUT, OFFSETS, FIRST, object())
    with pytest.raises(Fenced, match="fenced"):
        writer.settle()


def test_the_delivery_setting_defaults_to_exactly_once_and_refuses_other_modes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings().delivery == "exactly_once"
    monkeypatch.setenv("MODELBUS_INFERENCE_DELIVERY", "at_least_once")
    assert Settings().delivery == "at_least_once"
    monkeypatch.setenv("MODELBUS_INFERENCE_DELIVERY", "at_most_once")
    with pytest.raises(ValidationError, match="at_least_once"):
        Settings()


def test_the_at_least_once_producer_is_idempotent_and_not_transactional() -> None:
    settings = Settings(delivery="at_least_once")
    config = idempotent_producer_config(settings)
    assert config["enable.idempotence"] is True
    assert "transactional.id" not in config
    assert "transaction.timeout.ms" not in config
    transactional = producer_config(settings)
    assert {k: v for k, v in transactional.items() if not k.startswith("transaction")} == config


class FakeTransactionalProducer:
    """A transaction that commits, or whose offsets fail the way it is told to."""

    def __init__(self, failure: KafkaError | None = None) -> None:
        self.failure = failure

    def begin_transaction(self) -> None:
        pass

    def produce(self, topic, value, key, headers=None) -> None:  # type: ignore[no-untyped-def,unused-ignore]
        pass

    def send_offsets_to_transaction(self, offsets, metadata, timeout) -> None:  # type: ignore[no-untyped-def,unused-ignore]
        if self.failure is not None:
            raise KafkaException(self.failure)

    def commit_transaction(self, timeout: float) -> None:
        pass

    def abort_transaction(self, timeout: float) -> None:
        pass


def test_the_transactional_writer_reports_progress_only_for_a_committed_transaction() -> None:
    abort = KafkaError(KafkaError._STATE, "boom", txn_requires_abort=True)
    commits: list[str] = []
    for name, producer in (
        ("committed", FakeTransactionalProducer()),
        ("aborted", FakeTransactionalProducer(abort)),
    ):
        writer = TransactionalWriter(
            producer,  # type: ignore[arg-type]
            worker_name="w-0",
            on_abort=lambda: None,
            on_commit=lambda name=name: commits.append(name),  # type: ignore[misc]
        )
        writer.submit(OUT, OFFSETS, FIRST, object())
        writer.settle()
    assert commits == ["committed"]

"""The transactional writer: commit, abort -> rewind offsets, fencing -> stop (fake producer)."""

from __future__ import annotations

import threading

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from modelbus_inference.predict import Outgoing
from modelbus_inference.transaction import Fenced, TransactionalWriter


class FakeProducer:
    """Records the transaction calls; fails send_offsets the way it is told to."""

    def __init__(self, failure: KafkaError | None = None) -> None:
        self.failure = failure
        self.calls: list[str] = []
        self.produced: list[bytes] = []

    def begin_transaction(self) -> None:
        self.calls.append("begin")

    def produce(self, topic, value, key, headers=None) -> None:  # type: ignore[no-untyped-def]
        self.produced.append(value)

    def poll(self, timeout: float) -> int:
        return 0

    def send_offsets_to_transaction(self, offsets, metadata, timeout) -> None:  # type: ignore[no-untyped-def]
        self.calls.append("send_offsets")
        if self.failure is not None:
            raise KafkaException(self.failure)

    def commit_transaction(self, timeout: float) -> None:
        self.calls.append("commit")

    def abort_transaction(self, timeout: float) -> None:
        self.calls.append("abort")


OUT = [Outgoing("modelbus.credit.predictions", b"k", b"v", [])]
FIRST = {("modelbus.credit.requests", 2): 40}
OFFSETS = [TopicPartition("modelbus.credit.requests", 2, 45)]


def test_a_committed_batch_needs_no_rewind() -> None:
    producer = FakeProducer()
    writer = TransactionalWriter(producer, worker_name="w-0", on_abort=lambda: None)  # type: ignore[arg-type]
    writer.submit(OUT, OFFSETS, FIRST, object())
    assert writer.settle() is None
    assert producer.calls == ["begin", "send_offsets", "commit"]
    assert producer.produced == [b"v"]
    writer.close()


def test_an_aborted_batch_is_aborted_and_its_first_offsets_come_back() -> None:
    aborted = []
    producer = FakeProducer(KafkaError(KafkaError._STATE, "boom", txn_requires_abort=True))
    writer = TransactionalWriter(producer, worker_name="w-0", on_abort=lambda: aborted.append(1))  # type: ignore[arg-type]
    writer.submit(OUT, OFFSETS, FIRST, object())
    assert writer.settle() == FIRST
    assert producer.calls == ["begin", "send_offsets", "abort"]
    assert aborted == [1]
    writer.close()


def test_a_fenced_producer_stops_the_worker() -> None:
    producer = FakeProducer(KafkaError(KafkaError._FENCED, "fenced", fatal=True))
    writer = TransactionalWriter(producer, worker_name="w-0", on_abort=lambda: None)  # type: ignore[arg-type]
    writer.submit(OUT, OFFSETS, FIRST, object())
    with pytest.raises(Fenced, match="w-0"):
        writer.settle()
    writer.close()


def test_only_one_transaction_is_open_at_a_time() -> None:
    writer = TransactionalWriter(FakeProducer(), worker_name="w-0", on_abort=lambda: None)  # type: ignore[arg-type]
    writer.submit(OUT, OFFSETS, FIRST, object())
    with pytest.raises(RuntimeError, match="settle"):
        writer.submit(OUT, OFFSETS, FIRST, object())
    writer.close()


def test_a_committed_batch_reports_its_produce_offsets_and_commit_stages_in_order() -> None:
    stages: list[str] = []
    writer = TransactionalWriter(
        FakeProducer(),  # type: ignore[arg-type]
        worker_name="w-0",
        on_abort=lambda: None,
        on_stage=lambda stage, elapsed_ms: stages.append(stage) if elapsed_ms >= 0 else None,
    )
    writer.submit(OUT, OFFSETS, FIRST, object())
    assert writer.settle() is None
    assert stages == ["produce", "offsets", "commit"]


def test_an_aborted_batch_reports_no_commit_stage() -> None:
    stages: list[str] = []
    producer = FakeProducer(KafkaError(KafkaError._STATE, "boom", txn_requires_abort=True))
    writer = TransactionalWriter(
        producer,  # type: ignore[arg-type]
        worker_name="w-0",
        on_abort=lambda: None,
        on_stage=lambda stage, elapsed_ms: stages.append(stage),
    )
    writer.submit(OUT, OFFSETS, FIRST, object())
    assert writer.settle() == FIRST
    assert stages == ["produce"]


class ThreadRecording(TransactionalWriter):
    """Records the thread each batch is written on."""

    threads: list[threading.Thread]

    def _commit(self, *args: object) -> bool:  # type: ignore[override]
        self.threads.append(threading.current_thread())
        return super()._commit(*args)  # type: ignore[arg-type]


def test_every_batch_is_written_on_one_thread_that_ends_with_the_writer() -> None:
    threads: list[threading.Thread] = []
    ThreadRecording.threads = threads
    writer = ThreadRecording(FakeProducer(), worker_name="w-0", on_abort=lambda: None)  # type: ignore[arg-type]
    for _ in range(3):
        writer.submit(OUT, OFFSETS, FIRST, object())
        assert writer.settle() is None

    assert len(threads) == 3
    assert len(set(threads)) == 1
    assert threads[0] is not threading.current_thread()
    writer.close()
    threads[0].join(5)
    assert not threads[0].is_alive()


def test_an_abandoned_writer_s_thread_ends() -> None:
    threads: list[threading.Thread] = []
    ThreadRecording.threads = threads
    writer = ThreadRecording(FakeProducer(), worker_name="w-0", on_abort=lambda: None)  # type: ignore[arg-type]
    writer.submit(OUT, OFFSETS, FIRST, object())
    writer.settle()
    (thread,) = threads

    writer.abandon()
    thread.join(5)

    assert not thread.is_alive()

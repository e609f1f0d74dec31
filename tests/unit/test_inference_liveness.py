"""Liveness pieces of inference: stall reporting and transactions under a deadline (fakes)."""

from __future__ import annotations

import threading

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from modelbus_inference.metrics import Progress
from modelbus_inference.predict import Outgoing
from modelbus_inference.transaction import Fenced, Stuck, TransactionalWriter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_is_not_judged_before_streaming_starts() -> None:
    clock = Clock()
    progress = Progress(stall_after_s=5, clock=clock)
    clock.now += 60
    assert progress.report() == (True, {"state": "starting", "last_commit_age_s": None})


def test_progress_turns_unhealthy_with_the_reason_when_nothing_moved_past_the_setting() -> None:
    clock = Clock()
    progress = Progress(stall_after_s=5, clock=clock)
    progress.streaming()
    progress.committed()
    clock.now += 4
    assert progress.report() == (True, {"state": "streaming", "last_commit_age_s": 4.0})
    progress.rebuilding("Stuck: commit past its deadline")
    clock.now += 2
    healthy, details = progress.report()
    assert healthy is False
    assert details == {
        "state": "rebuilding",
        "last_commit_age_s": 6.0,
        "reason": "no commit and no idle poll for 6.0 s (Stuck: commit past its deadline)",
    }


def test_an_idle_poll_counts_as_progress() -> None:
    clock = Clock()
    progress = Progress(stall_after_s=5, clock=clock)
    progress.streaming()
    clock.now += 10
    progress.idle()
    clock.now += 1
    assert progress.report() == (True, {"state": "streaming", "last_commit_age_s": None})


class HangingProducer:
    """send_offsets_to_transaction never returns until released (a broker that went away)."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def begin_transaction(self) -> None:
        pass

    def produce(self, topic, value, key, headers=None) -> None:  # type: ignore[no-untyped-def,unused-ignore]
        pass

    def send_offsets_to_transaction(self, offsets, metadata, timeout) -> None:  # type: ignore[no-untyped-def,unused-ignore]
        self.release.wait(30)
        raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "timed out", retriable=True))


OUT = [Outgoing("modelbus.credit.predictions", b"k", b"v", [])]


def test_a_transaction_stuck_past_its_deadline_raises_stuck_instead_of_hanging() -> None:
    producer = HangingProducer()
    writer = TransactionalWriter(producer, worker_name="w-0", on_abort=lambda: None, deadline_s=0.1)  # type: ignore[arg-type]
    writer.submit(OUT, [TopicPartition("t", 0, 1)], {("t", 0): 0}, object())
    with pytest.raises(Stuck, match="w-0"):
        writer.settle()
    producer.release.set()


def test_a_retriable_error_left_after_the_deadline_asks_for_a_rebuild() -> None:
    producer = HangingProducer()
    producer.release.set()
    writer = TransactionalWriter(producer, worker_name="w-0", on_abort=lambda: None, deadline_s=5)  # type: ignore[arg-type]
    writer.submit(OUT, [TopicPartition("t", 0, 1)], {("t", 0): 0}, object())
    with pytest.raises(Fenced, match="timed out"):
        writer.settle()

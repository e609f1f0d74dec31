"""How the stream loop forms a micro-batch, and the stage timings it records per batch."""

from __future__ import annotations

import gc
import time
from typing import Any

import pytest

from modelbus_inference import stream
from modelbus_inference.config import Settings
from modelbus_inference.metrics import Metrics, observe_many
from modelbus_inference.predict import Incoming, Outgoing
from modelbus_inference.stream import StreamLoop


class FakeMessage:
    def __init__(self, offset: int) -> None:
        self._offset = offset

    def error(self) -> None:
        return None

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes:
        return f"r{self._offset}".encode()

    def value(self) -> bytes:
        return b"request"


class FakeConsumer:
    """Hands out what is queued, at most ``n`` per consume(); records every call."""

    def __init__(self, queued: int) -> None:
        self.queued = [FakeMessage(offset) for offset in range(queued)]
        self.calls: list[tuple[int, float]] = []
        self.metadata_requests = 0

    def consume(self, n: int, timeout: float) -> list[FakeMessage]:
        self.calls.append((n, timeout))
        taken, self.queued = self.queued[:n], self.queued[n:]
        return taken

    def consumer_group_metadata(self) -> object:
        self.metadata_requests += 1
        return object()

    def seek(self, partition: object) -> None:
        pass  # a rewind; what was taken stays taken here


class EchoPredictor:
    def __init__(self) -> None:
        self.metrics = Metrics()
        self.calls: list[int] = []  # the size of each predict() call

    def predict(self, batch: list[Incoming], serving: object) -> list[Outgoing]:
        self.calls.append(len(batch))
        return [Outgoing("out", m.key, m.value or b"", []) for m in batch]


class Serving:
    serving = object()


class RecordingWriter:
    """Submits nothing anywhere; its previous batch counts as still being written for the
    next ``busy_for`` looks at ``busy``."""

    pending = False
    needs_group_metadata = True

    def __init__(self, busy_for: int = 0) -> None:
        self.submitted: list[list[Outgoing]] = []
        self.metadata: list[object] = []  # the group metadata each batch was submitted with
        self.busy_for = busy_for
        self.aborts_next = False  # the batch in flight reports an aborted transaction

    @property
    def busy(self) -> bool:
        self.busy_for -= 1
        return self.busy_for >= 0

    def settle(self, *, final: bool = False) -> dict[tuple[str, int], int] | None:
        if self.aborts_next:
            self.aborts_next = False
            return {}
        return None

    def submit(self, outputs: list[Outgoing], *args: Any) -> None:
        self.submitted.append(outputs)
        self.metadata.append(args[-1])


def loop_over(
    consumer: FakeConsumer, busy_for: int = 0, **settings: Any
) -> tuple[StreamLoop, RecordingWriter]:
    loop = StreamLoop(Settings(model="credit", **settings), EchoPredictor(), Serving())  # type: ignore[arg-type]
    writer = RecordingWriter(busy_for)
    loop.consumer, loop.writer = consumer, writer  # type: ignore[assignment]
    return loop, writer


@pytest.mark.parametrize("delivery", ["exactly_once", "at_least_once"])
def test_a_batch_runs_with_what_has_arrived_once_its_first_request_is_in(delivery: str) -> None:
    consumer = FakeConsumer(queued=3)
    loop, writer = loop_over(consumer, max_batch_size=500, max_wait_ms=5, delivery=delivery)

    assert loop.run_once() == 3

    # Wait up to max_wait_ms for one, then take what is there without waiting (linger 0).
    assert consumer.calls == [(1, 0.005), (499, 0.0)]
    assert [[o.key for o in outputs] for outputs in writer.submitted] == [[b"r0", b"r1", b"r2"]]


def test_batch_linger_waits_for_more_and_max_batch_size_still_caps_the_batch() -> None:
    consumer = FakeConsumer(queued=30)
    loop, _ = loop_over(consumer, max_batch_size=20, max_wait_ms=5, batch_linger_ms=3)

    assert loop.run_once() == 20
    assert consumer.calls == [(1, 0.005), (19, 0.003)]
    assert len(consumer.queued) == 10


def one_arrives_per_call(consumer: FakeConsumer, already_there: int) -> None:
    """From now on, one more of ``consumer``'s queued messages arrives before each consume()."""
    consumer.queued, later = consumer.queued[:already_there], consumer.queued[already_there:]

    def consume(n: int, timeout: float) -> list[FakeMessage]:
        consumer.queued += later[:1]
        del later[:1]
        return FakeConsumer.consume(consumer, n, timeout)

    consumer.consume = consume  # type: ignore[method-assign]


def test_a_batch_keeps_growing_while_the_previous_one_is_still_written() -> None:
    consumer = FakeConsumer(queued=20)
    loop, writer = loop_over(consumer, busy_for=2, max_batch_size=500, batch_linger_ms=0)
    one_arrives_per_call(consumer, already_there=2)

    assert loop.run_once() == 6
    # The wait for a first request and the (zero) linger take 4; then, while the writer is
    # busy, a short read per look at it; once it is free the batch goes with what it has.
    assert consumer.calls == [(1, 0.005), (499, 0.0), (496, 0.002), (495, 0.002)]
    assert [o.key for o in writer.submitted[0]] == [f"r{i}".encode() for i in range(6)]


def test_a_growing_batch_is_scored_in_one_call_once_the_writer_is_free() -> None:
    consumer = FakeConsumer(queued=20)
    loop, _ = loop_over(consumer, busy_for=2, max_batch_size=500, batch_linger_ms=0)
    one_arrives_per_call(consumer, already_there=2)

    assert loop.run_once() == 6
    # Not once per slice read while the writer was busy (4, 1, 1): a call's fixed cost would
    # be paid three times.
    assert loop.predictor.calls == [6]  # type: ignore[attr-defined]


def test_a_long_fill_scores_what_has_come_in_chunks_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(stream, "FILL_SCORE_AT", 3)
    consumer = FakeConsumer(queued=30)
    loop, writer = loop_over(consumer, busy_for=100, max_batch_size=8, batch_linger_ms=0)
    one_arrives_per_call(consumer, already_there=2)

    assert loop.run_once() == 8
    # 4 fetched (>= 3: scored at the next look), then 3 more, then the last one at the end.
    assert loop.predictor.calls == [4, 3, 1]  # type: ignore[attr-defined]
    assert [o.key for o in writer.submitted[0]] == [f"r{i}".encode() for i in range(8)]


def test_a_growing_batch_stops_at_max_batch_size_even_while_the_writer_is_busy() -> None:
    consumer = FakeConsumer(queued=30)
    loop, writer = loop_over(consumer, busy_for=100, max_batch_size=8, batch_linger_ms=0)
    one_arrives_per_call(consumer, already_there=2)

    assert loop.run_once() == 8
    assert len(writer.submitted[0]) == 8
    assert writer.busy_for > 0  # it stopped for the size, not because the writer got free


def test_a_writer_that_stays_busy_stops_the_growing_at_the_kafka_deadline() -> None:
    consumer = FakeConsumer(queued=1)  # one request, then nothing more ever arrives
    loop, writer = loop_over(consumer, busy_for=10**9, batch_linger_ms=0, kafka_deadline_s=0.05)
    started = time.monotonic()

    assert loop.run_once() == 1

    # It went on to settle() (which raises Stuck for a real writer) instead of reading forever.
    assert 0.05 <= time.monotonic() - started < 5
    assert len(writer.submitted) == 1


def test_an_idle_poll_makes_one_call_and_submits_nothing() -> None:
    consumer = FakeConsumer(queued=0)
    loop, writer = loop_over(consumer, max_wait_ms=5)

    assert loop.run_once() == 0
    assert consumer.calls == [(1, 0.005)]
    assert writer.submitted == []


def test_each_batch_records_its_fetch_score_and_wait_stages_once() -> None:
    consumer = FakeConsumer(queued=4)
    loop, _ = loop_over(consumer, max_batch_size=2)

    loop.run_once()
    loop.run_once()

    registry = loop.metrics.registry
    for stage in ("fetch", "score", "fill", "wait"):
        count = registry.get_sample_value(
            "modelbus_inference_stage_ms_count", {"model": "credit", "stage": stage}
        )
        assert count == 2, stage
    # The writer-thread stages are the writer's to record; none ran here.
    assert (
        registry.get_sample_value(
            "modelbus_inference_stage_ms_count", {"model": "credit", "stage": "commit"}
        )
        == 0
    )


def test_garbage_collections_are_timed_by_generation_once_watched() -> None:
    metrics = Metrics()
    metrics.watch_gc()
    try:
        gc.collect(2)
        gc.collect(0)
    finally:
        gc.callbacks.pop()
    count = metrics.registry.get_sample_value
    assert count("modelbus_inference_gc_pause_ms_count", {"generation": "2"}) == 1
    assert count("modelbus_inference_gc_pause_ms_count", {"generation": "0"}) >= 1


@pytest.mark.parametrize("needs", [True, False])
def test_the_group_metadata_is_fetched_only_for_a_writer_that_needs_it(needs: bool) -> None:
    # It is a round trip to librdkafka's own thread: an at-least-once batch has no use for it.
    consumer = FakeConsumer(queued=2)
    loop, writer = loop_over(consumer, max_batch_size=500)
    writer.needs_group_metadata = needs

    assert loop.run_once() == 2

    assert consumer.metadata_requests == (1 if needs else 0)


def test_the_group_metadata_is_fetched_once_per_assignment_and_again_after_an_abort() -> None:
    consumer = FakeConsumer(queued=7)
    loop, writer = loop_over(consumer, max_batch_size=1)

    for _ in range(3):
        assert loop.run_once() == 1
    assert consumer.metadata_requests == 1
    assert writer.metadata[0] is writer.metadata[1] is writer.metadata[2]

    # A rebalance: the partitions go, new ones come (a new generation of the group).
    loop._on_revoke(consumer, [])  # type: ignore[arg-type]
    assert loop.run_once() == 1
    loop._on_assign(consumer, [])  # type: ignore[arg-type]
    assert loop.run_once() == 1
    assert consumer.metadata_requests == 3
    assert writer.metadata[3] is not writer.metadata[2]

    # The broker refused the last transaction (a stale generation would): fetch it again.
    writer.aborts_next = True
    assert loop.run_once() == 0
    assert loop.run_once() == 1
    assert consumer.metadata_requests == 4
    assert len(writer.submitted) == 6


def test_a_dropped_consumer_closing_in_the_background_leaves_the_metadata_alone() -> None:
    consumer = FakeConsumer(queued=2)
    loop, _ = loop_over(consumer, max_batch_size=1)
    loop.run_once()

    dropped = FakeConsumer(queued=0)
    loop._on_assign(dropped, [])  # type: ignore[arg-type]
    loop._on_revoke(dropped, [])  # type: ignore[arg-type]
    loop.run_once()

    assert consumer.metadata_requests == 1


@pytest.mark.parametrize("count", [1, 4, 600])
def test_observe_many_counts_each_value_where_observe_would(count: int) -> None:
    # On a bound, between bounds, past the last bound (+Inf), and the same values repeated.
    values = [
        (0.5, 0.7, 1.0, 20.0, 49.9, 5000.0, 7500.25)[i % 7] * (1 + i // 7) for i in range(count)
    ]
    batched, one_by_one = Metrics(), Metrics()

    observe_many(batched.end_to_end_ms.labels("credit", "1"), values)
    for value in values:
        one_by_one.end_to_end_ms.labels("credit", "1").observe(value)

    def samples(metrics: Metrics) -> dict[tuple[str, str], float]:
        (family,) = [
            f for f in metrics.registry.collect() if f.name == "modelbus_inference_end_to_end_ms"
        ]
        return {
            (s.name, s.labels.get("le", "")): s.value
            for s in family.samples
            if s.name != "modelbus_inference_end_to_end_ms_created"
        }

    expected = samples(one_by_one)
    assert expected[("modelbus_inference_end_to_end_ms_count", "")] == count
    assert samples(batched) == pytest.approx(expected)

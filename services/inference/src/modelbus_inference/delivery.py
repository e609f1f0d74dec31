"""At-least-once delivery: a batch's offsets are committed only once every output is delivered.

The idempotent producer writes the outputs (its own retries add no duplicates) and the writer
waits for every delivery report. Only then are the batch's next offsets committed to the
consumer group, so a crash re-reads at most the batches whose commit had not landed: their
requests are scored again and answered twice, never lost. One failed delivery and the whole
batch is read again from its first offsets.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import structlog
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from modelbus_inference.predict import Outgoing
from modelbus_inference.writer import BatchWriter, Fenced

log = structlog.get_logger(__name__)

# The group moved on under this commit: whoever owns the partitions now reads them again from
# the last commit that landed (duplicates, no loss), and our next commit covers these offsets.
_GENERATION_LOST = {
    KafkaError.ILLEGAL_GENERATION,
    KafkaError.UNKNOWN_MEMBER_ID,
    KafkaError.REBALANCE_IN_PROGRESS,
    KafkaError._ASSIGNMENT_LOST,
}


class AtLeastOnceWriter(BatchWriter):
    """Produces a batch's outputs, waits for their delivery, then commits its offsets.

    The offsets of delivered batches are committed asynchronously on the stream thread (no
    round trip on the hot path), one commit in flight at a time: batches delivered meanwhile
    go out together in the next one, once the last is answered (a group coordinator sent a
    commit per small batch falls behind, times requests out and fences the member). When
    ``final``, before the partitions are given up, they are committed synchronously.
    """

    needs_group_metadata = False  # offsets go through the consumer, not a transaction

    def __init__(
        self,
        producer: Producer,
        *,
        consumer: Consumer,
        worker_name: str,
        on_abort: Callable[[], object],
        on_commit: Callable[[], object] = lambda: None,
        deadline_s: float = 30.0,
        on_stage: Callable[[str, float], object] = lambda stage, elapsed_ms: None,
    ) -> None:
        super().__init__(
            producer,
            worker_name=worker_name,
            on_abort=on_abort,
            on_commit=on_commit,
            deadline_s=deadline_s,
            on_stage=on_stage,
        )
        self.consumer = consumer
        self._pending_next: list[TopicPartition] = []
        # Next offset per partition of every batch delivered (since the last final commit).
        self._delivered: dict[tuple[str, int], int] = {}
        self._unsent = False  # _delivered holds offsets no commit sent so far carried
        self._in_flight = False  # an asynchronous commit awaits its answer

    def submit(
        self,
        outputs: list[Outgoing],
        next_offsets: list[TopicPartition],
        first_offsets: dict[tuple[str, int], int],
        group_metadata: Any,
    ) -> None:
        """Start delivering a batch; the previous one must be settled first."""
        super().submit(outputs, next_offsets, first_offsets, group_metadata)
        self._pending_next = next_offsets

    def settle(self, *, final: bool = False) -> dict[tuple[str, int], int] | None:
        """As ``BatchWriter.settle``; with nothing in flight, it sends the offsets delivered
        since the last commit (a final settle: synchronously, and only once)."""
        was_pending = self.pending
        rewind = super().settle(final=final)
        if not was_pending:
            self._send_commit(final=final)
        return rewind

    def offsets_committed(self, error: KafkaError | None, partitions: list[TopicPartition]) -> None:
        """The consumer's ``on_commit`` callback: report an asynchronous commit's outcome."""
        self._in_flight = False
        failed = error or next((p.error for p in partitions if p.error is not None), None)
        if failed is None:
            self.on_commit()
        else:
            log.warning("offsets not committed; a later commit covers them", error=str(failed))

    def _commit(
        self, outputs: list[Outgoing], next_offsets: list[TopicPartition], group_metadata: Any
    ) -> bool:
        deadline = time.monotonic() + self.deadline_s
        failures: list[KafkaError] = []

        def delivered(error: KafkaError | None, message: Message) -> None:
            if error is not None:
                failures.append(error)

        try:
            started = time.perf_counter()
            for output in outputs:
                self._produce(output, deadline, on_delivery=delivered)
            started = self._stage("produce", started)
            # flush() serves every delivery report before it returns 0.
            while self.producer.flush(0.1) > 0:
                self._check(deadline, "delivery")
            self._stage("delivery", started)
        except KafkaException as exception:
            raise Fenced(f"{self.worker_name}: {exception}") from exception
        fatal = [e for e in failures if e.fatal() or e.code() == KafkaError._FATAL]
        if fatal:
            raise Fenced(f"{self.worker_name}: {fatal[0].str()}")
        if failures:
            log.warning(
                "deliveries failed; the batch is read again",
                failed=len(failures),
                of=len(outputs),
                error=failures[0].str(),
            )
            self.on_abort()
            return False
        return True

    def _written(self, final: bool) -> None:
        for partition in self._pending_next:
            self._delivered[(partition.topic, partition.partition)] = partition.offset
        self._unsent = True
        self._send_commit(final=final)

    def _send_commit(self, *, final: bool) -> None:
        if not self._delivered or not (final or (self._unsent and not self._in_flight)):
            return
        offsets = [TopicPartition(t, p, o) for (t, p), o in self._delivered.items()]
        self._unsent = False
        if final:
            # These partitions may be someone else's next: never commit them again from here.
            self._delivered = {}
        self._commit_offsets(offsets, final=final)

    def _commit_offsets(self, offsets: list[TopicPartition], *, final: bool) -> None:
        try:
            if final:
                self.offsets_committed(
                    None, self.consumer.commit(offsets=offsets, asynchronous=False)
                )
            else:
                self.consumer.commit(offsets=offsets, asynchronous=True)
                self._in_flight = True
        except KafkaException as exception:
            error = exception.args[0]
            if not isinstance(error, KafkaError) or error.fatal():
                raise Fenced(f"{self.worker_name}: {exception}") from exception
            if final or error.code() in _GENERATION_LOST:
                log.warning(
                    "offsets not committed; their next owner reads them again", error=str(error)
                )
                return
            raise Fenced(f"{self.worker_name}: offset commit: {error.str()}") from exception

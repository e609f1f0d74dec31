"""One transaction per micro-batch (outputs + consumed offsets), committed on its own thread.

While batch n commits (network round trips to the transaction and group coordinators), the
stream thread already decodes and scores batch n+1; only one transaction is ever open.
Every wait has a deadline: a transaction that neither commits nor aborts in time raises
``Stuck`` on the stream thread, which then rebuilds its clients (the new producer's
``init_transactions`` fences this one and aborts whatever it left open).
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import structlog
from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition

from modelbus_inference.predict import Outgoing

log = structlog.get_logger(__name__)


class Fenced(RuntimeError):
    """The producer is unusable (fenced or fatal); the stream rebuilds its clients."""


class Stuck(RuntimeError):
    """A transaction neither committed nor aborted within its deadline."""


class TransactionalWriter:
    """Produces a batch's outputs and commits its offsets in one transaction, one at a time."""

    def __init__(
        self, producer: Producer, *, worker_name: str, on_abort: Any, deadline_s: float = 30.0
    ) -> None:
        self.producer = producer
        self.worker_name = worker_name
        self.on_abort = on_abort
        self.deadline_s = deadline_s
        self._abandoned = threading.Event()
        self._pending: Future[bool] | None = None
        self._pending_first: dict[tuple[str, int], int] = {}

    def submit(
        self,
        outputs: list[Outgoing],
        next_offsets: list[TopicPartition],
        first_offsets: dict[tuple[str, int], int],
        group_metadata: Any,
    ) -> None:
        """Start committing a batch; the previous one must be settled first."""
        if self._pending is not None:
            raise RuntimeError("settle() the previous transaction before submitting another")
        self._pending_first = first_offsets
        future: Future[bool] = Future()
        self._pending = future
        # A daemon thread: one stuck in librdkafka can be abandoned without blocking exit.
        threading.Thread(
            target=self._run,
            args=(future, outputs, next_offsets, group_metadata),
            name="transaction",
            daemon=True,
        ).start()

    @property
    def pending(self) -> bool:
        """Whether a transaction is open."""
        return self._pending is not None

    def settle(self) -> dict[tuple[str, int], int] | None:
        """Wait for the open transaction; the offsets to rewind to if it aborted, else None.

        Raises ``Fenced`` when the producer can no longer be used and ``Stuck`` when the
        transaction outlives its deadline; either way the caller rebuilds.
        """
        if self._pending is None:
            return None
        pending, self._pending = self._pending, None
        try:
            committed = pending.result(timeout=self.deadline_s + 5)
        except FutureTimeout:
            self._abandoned.set()
            raise Stuck(
                f"{self.worker_name}: transaction open > {self.deadline_s + 5:.0f} s"
            ) from None
        return None if committed else self._pending_first

    def close(self) -> None:
        """Settle the open transaction, if any."""
        self.settle()

    def abandon(self) -> None:
        """Give up on this writer: its thread stops retrying at its next step."""
        self._abandoned.set()
        self._pending = None

    def _run(self, future: Future[bool], *args: Any) -> None:
        try:
            future.set_result(self._commit(*args))
        except BaseException as error:  # handed to settle() on the stream thread
            future.set_exception(error)

    def _commit(
        self, outputs: list[Outgoing], next_offsets: list[TopicPartition], group_metadata: Any
    ) -> bool:
        producer = self.producer
        deadline = time.monotonic() + self.deadline_s
        try:
            producer.begin_transaction()
            for output in outputs:
                while True:
                    try:
                        producer.produce(
                            output.topic, output.value, output.key, headers=output.headers
                        )
                        break
                    except BufferError:
                        self._check(deadline, "produce")
                        producer.poll(0.01)
            producer.send_offsets_to_transaction(next_offsets, group_metadata, self._left(deadline))
            self._commit_with_retries(deadline)
            return True
        except KafkaException as exception:
            error = exception.args[0]
            if not isinstance(error, KafkaError) or error.fatal():
                raise Fenced(f"{self.worker_name}: {exception}") from exception
            if error.txn_requires_abort():
                log.warning("aborting transaction; its batch is reprocessed", error=error.str())
                self.on_abort()
                try:
                    producer.abort_transaction(self._left(deadline))
                except KafkaException as failed:
                    raise Fenced(f"{self.worker_name}: abort failed: {failed}") from failed
                return False
            # Retriable or unknown state after our own retries: the producer is rebuilt.
            raise Fenced(f"{self.worker_name}: {error.str()}") from exception

    def _commit_with_retries(self, deadline: float) -> None:
        backoff = 0.05
        while True:
            try:
                self.producer.commit_transaction(self._left(deadline))
                return
            except KafkaException as exception:
                error = exception.args[0]
                retriable = isinstance(error, KafkaError) and error.retriable()
                if not retriable:
                    raise
                self._check(deadline, "commit")
                log.warning("retrying transaction commit", error=error.str())
                time.sleep(backoff)
                backoff = min(backoff * 2, 1.0)

    def _left(self, deadline: float) -> float:
        return max(0.5, deadline - time.monotonic())

    def _check(self, deadline: float, step: str) -> None:
        if self._abandoned.is_set() or time.monotonic() > deadline:
            raise Stuck(f"{self.worker_name}: {step} past its deadline")

"""One transaction per micro-batch (outputs + consumed offsets), committed on its own thread.

While batch n commits (network round trips to the transaction and group coordinators), the
stream thread already decodes and scores batch n+1; only one transaction is ever open.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import structlog
from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition

from modelbus_inference.predict import Outgoing

log = structlog.get_logger(__name__)


class Fenced(RuntimeError):
    """Another instance took over this worker's transactional id; stop."""


class TransactionalWriter:
    """Produces a batch's outputs and commits its offsets in one transaction, one at a time."""

    def __init__(self, producer: Producer, *, worker_name: str, on_abort: Any) -> None:
        self.producer = producer
        self.worker_name = worker_name
        self.on_abort = on_abort
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="transaction")
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
        self._pending = self._executor.submit(self._commit, outputs, next_offsets, group_metadata)

    def settle(self) -> dict[tuple[str, int], int] | None:
        """Wait for the open transaction; the offsets to rewind to if it aborted, else None."""
        if self._pending is None:
            return None
        pending, self._pending = self._pending, None
        committed = pending.result()  # re-raises Fenced and unexpected errors here
        return None if committed else self._pending_first

    def close(self) -> None:
        """Settle and stop the commit thread."""
        try:
            self.settle()
        finally:
            self._executor.shutdown(wait=True)

    def _commit(
        self, outputs: list[Outgoing], next_offsets: list[TopicPartition], group_metadata: Any
    ) -> bool:
        producer = self.producer
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
                        producer.poll(0.01)
            producer.send_offsets_to_transaction(next_offsets, group_metadata, 30)
            self._commit_with_retries()
            return True
        except KafkaException as exception:
            error = exception.args[0]
            if isinstance(error, KafkaError) and error.txn_requires_abort():
                log.warning("aborting transaction; its batch is reprocessed", error=error.str())
                self.on_abort()
                producer.abort_transaction(30)
                return False
            if isinstance(error, KafkaError) and error.fatal():
                raise Fenced(f"{self.worker_name}: {error.str()}") from exception
            raise

    def _commit_with_retries(self) -> None:
        deadline = time.monotonic() + 60
        while True:
            try:
                self.producer.commit_transaction(30)
                return
            except KafkaException as exception:
                error = exception.args[0]
                retriable = isinstance(error, KafkaError) and error.retriable()
                if not retriable or time.monotonic() > deadline:
                    raise
                log.warning("retrying transaction commit", error=error.str())

"""Exactly-once delivery: a micro-batch's outputs and its consumed offsets in one transaction.

The transaction commits on the writer's thread (see ``writer.BatchWriter``) while the stream
thread scores the next batch. A transaction that neither commits nor aborts in time raises
``Stuck`` on the stream thread, which then rebuilds its clients (the new producer's
``init_transactions`` fences this one and aborts whatever it left open).
"""

from __future__ import annotations

import time
from typing import Any

import structlog
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from modelbus_inference.predict import Outgoing
from modelbus_inference.writer import BatchWriter, Fenced, Stuck

log = structlog.get_logger(__name__)
__all__ = ["Fenced", "Stuck", "TransactionalWriter"]


class TransactionalWriter(BatchWriter):
    """Produces a batch's outputs and commits its offsets in one transaction, one at a time."""

    def _commit(
        self, outputs: list[Outgoing], next_offsets: list[TopicPartition], group_metadata: Any
    ) -> bool:
        producer = self.producer
        deadline = time.monotonic() + self.deadline_s
        try:
            started = time.perf_counter()
            producer.begin_transaction()
            for output in outputs:
                self._produce(output, deadline)
            started = self._stage("produce", started)
            producer.send_offsets_to_transaction(next_offsets, group_metadata, self._left(deadline))
            started = self._stage("offsets", started)
            self._commit_with_retries(deadline)
            self._stage("commit", started)
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

    def _written(self, final: bool) -> None:
        self.on_commit()  # the offsets went in with the outputs

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

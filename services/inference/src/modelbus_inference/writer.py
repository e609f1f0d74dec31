"""What both delivery modes share: one batch at a time, written on its own thread, under a deadline.

While batch n is written (network round trips to the partition leaders and coordinators), the
stream thread already decodes and scores batch n+1; only one batch is ever in flight. A batch
that is neither written nor given up within its deadline raises ``Stuck`` on the stream thread,
which then rebuilds its clients.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from confluent_kafka import Producer, TopicPartition

from modelbus_inference.predict import Outgoing


class Fenced(RuntimeError):
    """The producer is unusable (fenced or fatal); the stream rebuilds its clients."""


class Stuck(RuntimeError):
    """A batch was neither written nor given up within its deadline."""


class BatchWriter:
    """Writes a batch's outputs and commits its offsets off the stream thread, one at a time.

    Subclasses implement ``_commit`` (on the writer's thread): True when the batch is written,
    False when it must be read again from its first offsets, ``Fenced``/``Stuck`` to rebuild;
    and ``_written`` (on the stream thread, in ``settle``) for what follows a written batch.
    ``on_commit`` is called once a batch's offsets are known to be committed; ``on_stage``
    with each writer-thread stage's duration in ms (see ``Metrics.stage_ms``).

    The writer's thread lives as long as the writer: starting a thread per batch cost the
    stream thread ~0.5 ms a batch (``Thread.start`` waits until the new thread has run), at
    1,000 requests/s in batches of a few a tenth of the stream thread's time.
    """

    needs_group_metadata = True
    """Whether ``submit`` needs the consumer's group metadata (a transaction's offsets do;
    fetching it is a round trip to librdkafka's own thread)."""

    def __init__(
        self,
        producer: Producer,
        *,
        worker_name: str,
        on_abort: Callable[[], object],
        on_commit: Callable[[], object] = lambda: None,
        deadline_s: float = 30.0,
        on_stage: Callable[[str, float], object] = lambda stage, elapsed_ms: None,
    ) -> None:
        self.producer = producer
        self.on_stage = on_stage
        self.worker_name = worker_name
        self.on_abort = on_abort
        self.on_commit = on_commit
        self.deadline_s = deadline_s
        self._abandoned = threading.Event()
        self._pending: Future[bool] | None = None
        self._pending_first: dict[tuple[str, int], int] = {}
        self._batches: queue.SimpleQueue[tuple[Future[bool], tuple[Any, ...]] | None] = (
            queue.SimpleQueue()
        )
        self._thread: threading.Thread | None = None

    def submit(
        self,
        outputs: list[Outgoing],
        next_offsets: list[TopicPartition],
        first_offsets: dict[tuple[str, int], int],
        group_metadata: Any,
    ) -> None:
        """Start writing a batch; the previous one must be settled first."""
        if self._pending is not None:
            raise RuntimeError("settle() the previous transaction before submitting another")
        self._pending_first = first_offsets
        future: Future[bool] = Future()
        self._pending = future
        if self._thread is None:
            # A daemon thread: one stuck in librdkafka can be abandoned without blocking exit.
            self._thread = threading.Thread(target=self._serve, name="batch-writer", daemon=True)
            self._thread.start()
        self._batches.put((future, (outputs, next_offsets, group_metadata)))

    @property
    def pending(self) -> bool:
        """Whether a batch is in flight."""
        return self._pending is not None

    @property
    def busy(self) -> bool:
        """Whether the batch in flight is still being written (``settle`` would wait)."""
        return self._pending is not None and not self._pending.done()

    def settle(self, *, final: bool = False) -> dict[tuple[str, int], int] | None:
        """Wait for the batch in flight; the offsets to rewind to if it failed, else None.

        ``final``: the partitions are about to be given up (revoked, or the worker stops), so
        nothing may be left to finish later. Raises ``Fenced`` when a client can no longer be
        used and ``Stuck`` when the batch outlives its deadline; either way the caller rebuilds.
        """
        if self._pending is None:
            return None
        pending, self._pending = self._pending, None
        try:
            written = pending.result(timeout=self.deadline_s + 5)
        except FutureTimeout:
            self._abandoned.set()
            raise Stuck(
                f"{self.worker_name}: batch in flight > {self.deadline_s + 5:.0f} s"
            ) from None
        if not written:
            return self._pending_first
        self._written(final)
        return None

    def close(self) -> None:
        """Settle the batch in flight, if any, and let the writer's thread end."""
        try:
            self.settle(final=True)
        finally:
            self.stop()

    def stop(self) -> None:
        """Let the writer's thread end once it has nothing left to write."""
        self._batches.put(None)

    def abandon(self) -> None:
        """Give up on this writer: its thread stops retrying at its next step, then ends."""
        self._abandoned.set()
        self._pending = None
        self.stop()

    def _serve(self) -> None:
        """The writer's thread: write each batch submitted, one at a time, until told to end."""
        while (batch := self._batches.get()) is not None and not self._abandoned.is_set():
            future, args = batch
            try:
                future.set_result(self._commit(*args))
            except BaseException as error:  # handed to settle() on the stream thread
                future.set_exception(error)

    def _commit(
        self, outputs: list[Outgoing], next_offsets: list[TopicPartition], group_metadata: Any
    ) -> bool:
        raise NotImplementedError

    def _written(self, final: bool) -> None:
        raise NotImplementedError

    def _produce(self, output: Outgoing, deadline: float, **callback: Any) -> None:
        """Produce one output, waiting for room in a full local queue until the deadline."""
        while True:
            try:
                self.producer.produce(
                    output.topic, output.value, output.key, headers=output.headers, **callback
                )
                return
            except BufferError:
                self._check(deadline, "produce")
                self.producer.poll(0.01)

    def _stage(self, stage: str, started: float) -> float:
        """Report ``stage`` as having run since ``started``; returns now (the next's start)."""
        now = time.perf_counter()
        self.on_stage(stage, (now - started) * 1000)
        return now

    def _left(self, deadline: float) -> float:
        return max(0.5, deadline - time.monotonic())

    def _check(self, deadline: float, step: str) -> None:
        if self._abandoned.is_set() or time.monotonic() > deadline:
            raise Stuck(f"{self.worker_name}: {step} past its deadline")

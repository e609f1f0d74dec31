"""Running jobs off the consumer loop: a worker process, or inline for tests and the CLI."""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import threading
from concurrent.futures import Future, ProcessPoolExecutor

from modelbus.telemetry import configure_logging
from modelbus_trainer.job import run_job
from modelbus_trainer.spec import JobOutcome, JobSpec


def _init_worker(level: str) -> None:
    # Ctrl-C reaches the whole process group; the parent decides when the worker stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    configure_logging("trainer-worker", level=level)


class ProcessJobRunner:
    """One spawned worker process trains jobs in order; the loop keeps consuming meanwhile.

    Spawned, not forked: the parent holds librdkafka threads that a fork would copy half-alive.
    """

    def __init__(self, *, log_level: str = "INFO") -> None:
        self._pool = ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(log_level,),
        )
        self._done: queue.Queue[JobOutcome] = queue.Queue()
        self._pending = 0
        self._start_worker()

    def _start_worker(self) -> None:
        # Spawned with SIGINT ignored (kept across exec), so Ctrl-C stops only this process,
        # which then lets the running job finish and reports it.
        in_main_thread = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if in_main_thread else None
        try:
            self._pool.submit(os.getpid).result()
        finally:
            if in_main_thread:
                signal.signal(signal.SIGINT, previous)

    def submit(self, spec: JobSpec) -> None:
        """Queue a job for the worker."""
        self._pending += 1
        future = self._pool.submit(run_job, spec)
        future.add_done_callback(lambda finished: self._collect(spec, finished))

    def _collect(self, spec: JobSpec, future: Future[JobOutcome]) -> None:
        if future.cancelled():
            self._done.put(
                JobOutcome(
                    job_id=spec.job_id,
                    model=spec.model,
                    ok=False,
                    stage="train",
                    reason="the trainer stopped before this job ran; send a new "
                    "TrainingRequested to train again",
                    code=spec.code,
                    parent_version=spec.parent_version,
                )
            )
            return
        try:
            outcome = future.result()
        except Exception as error:  # the worker process died (OOM, signal)
            outcome = JobOutcome(
                job_id=spec.job_id,
                model=spec.model,
                ok=False,
                stage="train",
                reason=f"the worker process died: {type(error).__name__}: {error}; "
                "check memory (lower max_rows) and the trainer log, then ask again",
                code=spec.code,
                parent_version=spec.parent_version,
            )
        self._done.put(outcome)

    def completed(self) -> list[JobOutcome]:
        """Outcomes finished since the last call."""
        outcomes = []
        while True:
            try:
                outcomes.append(self._done.get_nowait())
            except queue.Empty:
                break
        self._pending -= len(outcomes)
        return outcomes

    def pending(self) -> int:
        """Jobs submitted whose outcome was not collected yet."""
        return self._pending

    def close(self) -> None:
        """Wait for running jobs and stop the worker."""
        self._pool.shutdown(wait=True, cancel_futures=True)


class InlineJobRunner:
    """Runs each job in the calling thread at submit time."""

    def __init__(self) -> None:
        self._done: list[JobOutcome] = []

    def submit(self, spec: JobSpec) -> None:
        """Train now."""
        self._done.append(run_job(spec))

    def completed(self) -> list[JobOutcome]:
        """Outcomes finished since the last call."""
        done, self._done = self._done, []
        return done

    def pending(self) -> int:
        """Jobs not collected yet."""
        return len(self._done)

    def close(self) -> None:
        """Nothing to stop."""

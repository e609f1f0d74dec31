"""Running one worker in this process, or N worker processes that share the consumer group."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import structlog

from modelbus.telemetry import configure_logging
from modelbus_inference.config import Settings

log = structlog.get_logger(__name__)
RESTART_DELAY_S = 1.0


def run_worker(settings: Settings) -> None:
    """Run one worker until SIGTERM/SIGINT; it exits within ``shutdown_timeout_s`` of one.

    The worker runs on its own thread so that a Kafka call stuck in an outage cannot hold the
    process: after the signal it gets ``shutdown_timeout_s`` to finish its transaction and
    leave, then the process ends regardless (the broker aborts what was left open).
    """
    from modelbus_inference.bootstrap import bootstrap

    configure_logging(f"inference-{settings.worker_index}")
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    failed: list[BaseException] = []
    done = threading.Event()

    def body() -> None:
        try:
            bootstrap(settings).run(stop)
        except BaseException as error:
            log.exception("worker failed", error=str(error))
            failed.append(error)
        finally:
            done.set()

    threading.Thread(target=body, name="worker", daemon=True).start()
    while not done.wait(0.2) and not stop.is_set():
        pass
    if not done.wait(settings.shutdown_timeout_s):
        log.warning("worker did not stop in time; exiting", after_s=settings.shutdown_timeout_s)
    sys.stdout.flush()
    sys.stderr.flush()
    # Threads stuck in librdkafka (or a dead broker's close) must not hold the exit.
    os._exit(1 if failed else 0)


def supervise(settings: Settings, workers: int) -> None:
    """Start ``workers`` processes (indices 0..N-1) and restart any that dies until stopped."""
    configure_logging("inference-supervisor")
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    env = {**os.environ, "MODELBUS_INFERENCE_MODEL": settings.model}
    children: dict[int, subprocess.Popen[bytes]] = {}

    def spawn(index: int) -> None:
        children[index] = subprocess.Popen(
            [sys.executable, "-m", "modelbus_inference", "run", "--worker-index", str(index)],
            env={**env, "MODELBUS_INFERENCE_WORKER_INDEX": str(index)},
        )
        log.info("worker started", index=index, pid=children[index].pid)

    for index in range(workers):
        spawn(index)
    try:
        while not stopping.wait(0.5):
            for index, child in list(children.items()):
                if child.poll() is not None:
                    log.warning("worker exited; restarting", index=index, code=child.returncode)
                    time.sleep(RESTART_DELAY_S)
                    spawn(index)
    finally:
        for child in children.values():
            child.send_signal(signal.SIGTERM)
        for child in children.values():
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()

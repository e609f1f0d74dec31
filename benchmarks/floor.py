"""The latency floor: inference's own stream loop with the model taken out.

``python -m benchmarks.floor --model M --delivery exactly_once|at_least_once [--worker-index I]``
runs ``modelbus_inference.stream.StreamLoop`` -- the same consumer and producer settings, the
same micro-batches (``max_batch_size``, ``max_wait_ms``), the same writer (one transaction per
batch, written while the next batch is read; or, at-least-once, an idempotent producer whose
offsets are committed once the batch is delivered) -- with a predictor that decodes nothing,
scores nothing and encodes nothing: each request's bytes go to the predictions topic under its
own key. What modelbus adds to a request's latency is its latency minus this floor's, measured
at the same offered load (benchmarks/inference.py).

``exactly_once`` is the transactional consume -> produce floor; ``at_least_once`` the plain one.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import cast

import typer
from prometheus_client import start_http_server

from modelbus.bus.topics import data_topic
from modelbus_inference.config import Settings
from modelbus_inference.metrics import Metrics
from modelbus_inference.predict import BatchPredictor, Incoming, Outgoing
from modelbus_inference.serving import ModelManager
from modelbus_inference.stream import StreamLoop


class EchoPredictor:
    """A batch's outputs with no work: every request's bytes, as they came, to predictions."""

    def __init__(self, model: str, metrics: Metrics) -> None:
        self.metrics = metrics
        self.topic = data_topic(model, "predictions")

    def predict(self, batch: list[Incoming], serving: object) -> list[Outgoing]:
        """One output per request: same key, same bytes, no headers."""
        return [Outgoing(self.topic, message.key, message.value or b"", []) for message in batch]


class AlwaysServing:
    """Stands where the ModelManager stands: the stream only asks whether something serves."""

    serving = True


def floor_loop(settings: Settings) -> StreamLoop:
    """A StreamLoop whose predictor echoes (see the module docstring)."""
    predictor = EchoPredictor(settings.model, Metrics())
    return StreamLoop(
        settings, cast(BatchPredictor, predictor), cast(ModelManager, AlwaysServing())
    )


def main(
    model: str = typer.Option(..., help="Model whose requests topic the floor consumes."),
    delivery: str = typer.Option("exactly_once", help="exactly_once or at_least_once."),
    worker_index: int = typer.Option(0, help="Worker slot (transactional and member id)."),
    metrics_port: int = typer.Option(0, help="Serve the stage histograms on /metrics (0: off)."),
) -> None:
    """Run the floor loop until SIGTERM or SIGINT."""
    settings = Settings(model=model, delivery=delivery, worker_index=worker_index)  # type: ignore[arg-type]
    stop = threading.Event()

    def stopping(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, stopping)
    signal.signal(signal.SIGINT, stopping)
    loop = floor_loop(settings)
    if metrics_port:
        start_http_server(metrics_port, "127.0.0.1", registry=loop.metrics.registry)
    loop.start(stop)
    print(f"floor {settings.worker_name} ({delivery}) streaming", flush=True)
    loop.run(stop)


if __name__ == "__main__":
    typer.run(main)

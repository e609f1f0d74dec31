"""The monitor's pure ingest driven by a faust-streaming agent instead of its confluent loop.

Benchmark only. It answers one question with a number: would Faust make the monitor faster?
The same ``Ingest`` (joins, River detectors, windows) handles the same backlog; only the
transport differs: a Faust agent over the model's requests, predictions and feedback topics
(at-least-once, raw bytes decoded by modelbus's codec, windows closed and published on a
Faust timer) instead of ``MonitorLoop``. The agent writes its timings to a JSON file once it
has handled every message; the caller then stops the worker.

    python -m benchmarks.faust_monitor <model> <messages> <out.json>
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import faust

from modelbus.bus.envelope import Envelope
from modelbus.bus.topics import data_topic
from modelbus_monitor.bootstrap import bootstrap
from modelbus_monitor.config import Settings

KINDS = ("requests", "predictions", "feedback")


def build_app(model: str, messages: int, out: Path) -> faust.App:
    settings = Settings(models_pattern=model, group_id=f"bench-faust-{model}")
    monitor = bootstrap(settings)
    monitor.replay_logs()  # the model, its versions and training profile, from the lifecycle
    app = faust.App(
        f"bench-faust-{model}",
        broker=f"kafka://{settings.kafka.bootstrap_servers}",
        store="memory://",
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        processing_guarantee="at_least_once",
        topic_allow_declare=False,
        topic_disable_leader=True,
    )
    topic = app.topic(
        *(data_topic(model, kind) for kind in KINDS),
        key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw",
    )  # fmt: skip
    progress: dict[str, Any] = {"handled": 0, "first": None}

    @app.agent(topic)
    async def ingest(stream: faust.StreamT) -> None:
        async for event in stream.events():
            message = event.message
            envelope = Envelope(
                topic=message.topic, value=message.value, key=message.key,
                partition=message.partition, offset=message.offset,
            )  # fmt: skip
            decoded = monitor.codec.decode(message.value or b"", where=envelope.where)
            for out_event in monitor.ingest.event(envelope, decoded):
                monitor.publisher.publish(out_event)
            progress["handled"] += 1
            if progress["first"] is None:
                progress["first"] = time.perf_counter()
            if progress["handled"] == messages:
                seconds = time.perf_counter() - progress["first"]
                out.write_text(json.dumps({"messages": messages, "drain_s": seconds}))

    @app.timer(interval=0.25)
    async def close_windows() -> None:
        for name, watched in monitor.monitors.models.items():
            for health in monitor.ingest.closed(name, watched.close(time.time())):
                monitor.publisher.publish(health)
        monitor.publisher.flush()

    return app


if __name__ == "__main__":
    model, messages, out = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    application = build_app(model, messages, out)
    sys.argv = [sys.argv[0], "worker", "--loglevel", "warn", "--without-web"]
    application.main()

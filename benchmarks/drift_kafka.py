"""The monitor process draining a backlog of labelled traffic through Kafka: events per second.

An event is one request, its result and its label (three messages). The backlog is produced
first; the monitor then starts, replays it (the same path it takes after a restart) and
commits its offsets as it handles them; the rate is taken between its first and its last
commit, so start-up (imports, lifecycle replay) is left out and reported apart.

On the same backlog, the same pure ingest is then driven by a faust-streaming agent
(``benchmarks/faust_monitor.py``) instead of the monitor's confluent-kafka loop, timed from
its first handled message to its last: the transport's share of the cost, measured.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from modelbus.bus.security import client_config
from modelbus.bus.topics import data_topic
from modelbus.config import KafkaSettings
from modelbus.data import generate_credit
from tests.support.broker import create_model_topics, publish_lifecycle, request_codec
from tests.support.events import registered
from tests.support.monitor import Traffic, start_monitor
from tests.support.packages import build_credit_package
from tests.support.processes import stop_workers

KINDS = ("requests", "predictions", "feedback")


def _committed(consumer: Consumer, model: str) -> int:
    partitions = [TopicPartition(data_topic(model, k), p) for k in KINDS for p in range(4)]
    return sum(max(tp.offset, 0) for tp in consumer.committed(partitions, timeout=10))


def monitor_throughput(events: int) -> dict[str, Any]:
    settings = KafkaSettings()
    model = f"bench{uuid.uuid4().hex[:8]}"
    create_model_topics(settings, model)
    with tempfile.TemporaryDirectory() as directory:
        package = Path(directory) / "v1"
        sha256 = build_credit_package(package, n_rows=2_000, epochs=5)
        publish_lifecycle(settings, request_codec(), registered(model, 1, package, sha256))
        rows, labels = generate_credit(10_000, seed=3)
        traffic = Traffic(settings, model)
        started = time.perf_counter()
        for first in range(0, events, len(rows)):
            count = min(len(rows), events - first)
            traffic.send(rows[:count], labels[:count], first=first)
        produced_s = time.perf_counter() - started
        group = f"test-monitor-{model}"  # the group start_monitor gives it
        probe = Consumer({**client_config(settings.bootstrap_servers), "group.id": group})
        monitor = start_monitor(
            settings.bootstrap_servers, model, MODELBUS_MONITOR_IDLE_CLOSE_S="0.25"
        )
        launched = time.perf_counter()
        samples: list[tuple[float, int]] = []
        try:
            deadline = launched + 300
            while time.perf_counter() < deadline and monitor.poll() is None:
                done = _committed(probe, model)
                samples.append((time.perf_counter(), done))
                if done >= 3 * events:
                    break
                time.sleep(0.25)
        finally:
            stop_workers([monitor])
            probe.close()
        faust = _faust_agent(settings, model, events, Path(directory))
    moving = [(t, c) for t, c in samples if c > 0]
    if len(moving) < 2:
        return {"events": events, "completed": False, "events_per_s": None, "faust_agent": faust}
    (t_first, c_first), (t_last, c_last) = moving[0], moving[-1]
    rate = (c_last - c_first) / 3 / (t_last - t_first) if t_last > t_first else None
    return {
        "faust_agent": faust,
        "events": events,
        "messages": 3 * events,
        "produce_s": round(produced_s, 1),
        "startup_s": round(t_first - launched, 1),
        "drain_s": round(t_last - t_first, 1),
        "events_per_s": round(rate) if rate else None,
        "completed": c_last >= 3 * events,
    }


def _faust_agent(
    settings: KafkaSettings, model: str, events: int, directory: Path
) -> dict[str, Any]:
    """The same backlog through the same ingest, with a Faust agent as the transport."""
    out = directory / "faust.json"
    worker = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.faust_monitor", model, str(3 * events), str(out)],
        env={**os.environ, "MODELBUS_BOOTSTRAP_SERVERS": settings.bootstrap_servers},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.perf_counter() + 900
    try:
        while not out.exists() and worker.poll() is None and time.perf_counter() < deadline:
            time.sleep(0.5)
    finally:
        worker.kill()
        _, errors = worker.communicate()
    if not out.exists():
        return {"completed": False, "error": errors.decode(errors="replace")[-1000:]}
    timed = json.loads(out.read_text())
    return {
        "completed": True,
        "drain_s": round(timed["drain_s"], 1),
        "events_per_s": round(timed["messages"] / 3 / timed["drain_s"]),
    }

"""Inference throughput and latency vs MLflow serving and the raw broker -> results/inference.json.

One script, one machine, one run, the same ``credit`` artifact everywhere, on a warm broker:

0. ``warm_broker``: both floors at a spread of rates until the broker's JIT compilers are
   quiet, as a broker in production is; every paced run then reports the cores the broker,
   its JIT, the workers and the load generator used (benchmarks/cpu.py).
1. modelbus end to end (requests produced -> results committed in Kafka transactions): max
   sustained predictions/s draining a backlog, then p50/p99 latency at 50% of that rate
   (send -> committed result seen by a read_committed consumer); 1 and 2 workers, the
   service's default batch settings. Ratios to mlflow and to the raw pass-through use 1
   worker process against 1 process; drain rates count results, not offsets. Then the same
   again with ``MODELBUS_INFERENCE_DELIVERY=at_least_once``, its latencies measured at the
   same offered loads as exactly-once's (5%, 25%, 50% of exactly-once's max sustained rate),
   compared per load level in ``delivery_modes``.
   Each mode's floor (benchmarks/floor.py: the same stream loop with no decode, model or
   encode; transactional for exactly-once, plain for at-least-once) at the same offered
   loads, so ``p99_vs_floor`` says what modelbus adds to the tail beyond Kafka itself; every
   paced run's slowest 1% split into stages (benchmarks/latency.py) goes to
   results/inference_profile.txt.
2. ``mlflow models serve --env-manager local`` of the same logged model under a concurrent
   HTTP load generator (threads + httpx), 1-row and 100-row requests.
3. raw broker pass-through (consume + produce the same bytes, one process), from
   benchmarks/codec.py.

``python -m benchmarks.inference [--backlog N] [--profile] [--quick]``; the broker is
MODELBUS_BOOTSTRAP_SERVERS. ``--quick`` is a smoke run (1 worker, both delivery modes and
their floors, short steps, no mlflow or pass-through) that prints the slowest 1%'s stages and
writes its JSON to a temporary file, never to results/.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from benchmarks.codec import passthrough
from benchmarks.common import RESULTS, log, write_result
from benchmarks.cpu import CpuMeter, broker_pid
from benchmarks.latency import (
    Seen,
    render,
    slowest_breakdown,
    stage_counts,
    workers_stage_quantiles,
)
from modelbus.bus.reading import follow_from_now
from modelbus.bus.security import client_config
from modelbus.bus.topics import data_topic
from modelbus.config import KafkaSettings
from modelbus.events import new_meta
from modelbus.events import types as t
from modelbus.events.meta import now_utc
from modelbus_inference.config import Settings as InferenceSettings
from modelbus_inference.encoding import avro_string, zigzag
from tests.support.broker import (
    RequestProducer,
    create_model_topics,
    encode_request,
    lifecycle_events,
    publish_lifecycle,
    request_codec,
)
from tests.support.events import registered
from tests.support.packages import (
    CONTRACT,
    TYPED_REQUEST,
    build_credit_package,
    credit_contract,
    credit_rows,
)
from tests.support.ports import free_port
from tests.support.processes import REPO, start_worker, stop_workers

PARTITIONS = 4
# The service's own defaults: the benchmark measures what a deployment gets out of the box.
SERVICE_DEFAULTS = {
    name: InferenceSettings.model_fields[name].default for name in ("max_batch_size", "max_wait_ms")
}
LOAD_GENERATOR = (
    "one Python process on the same 2 cores: a confluent-kafka producer (linger.ms 1, paced; "
    "linger.ms 20 for backlogs) and one read_committed consumer counting results by request id"
)
WHY_SHORT = {
    "vs_raw_passthrough": "raw pass-through only copies bytes in C (librdkafka); a prediction "
    "costs ~20 us of Python per request on top (compiled Avro read ~6 us, validation, "
    "preprocessing + torch per batch ~3 us/row, result encode ~3 us, produce with envelope "
    "headers ~3.5 us), plus one transaction per batch; see the profile.",
    "p99_ms_at_half_load": "2 cores are shared by the broker (JVM), the workers, the load "
    "generator and, on this machine, other people's processes (see load_average); the tail "
    "is CPU queueing and the transaction commit cycle (begin/produce/AddOffsetsToTxn/"
    "TxnOffsetCommit/EndTxn, ~5-15 ms per batch), not the model (model_ms < 1 ms per batch). "
    "Compare lighter_load_latency and worker_part_* (sent_at -> result produced).",
    "two_workers_vs_one": "a second worker process needs a second core; with 2 cores the "
    "broker and the load generator already take most of one, so two workers mostly share "
    "what one had (see cpu_cores of the max sustained steps: the machine ~1.9 cores busy).",
    "vs_mlflow_single_row_throughput": "",
    "vs_mlflow_100_row_throughput": "a 100-row HTTP body is one request, one JSON parse and "
    "one forward pass for 100 rows; modelbus carries every row as its own Kafka message (Avro "
    "read, validation, result encode, produce with headers) inside a transaction, so its "
    "per-row cost is what a 100-row body amortises away.",
}
TARGETS = {
    "vs_mlflow_single_row_throughput": 20.0,
    "vs_mlflow_100_row_throughput": 2.0,
    "vs_raw_passthrough": 0.5,
    "p99_ms_at_half_load": 50.0,
    "two_workers_vs_one": 1.5,
}


FINDINGS = """
Where inference latency comes from (benchmarks/inference.py; stages: benchmarks/latency.py;
cores: benchmarks/cpu.py)

Findings that held in every run made (2 shared cores); the numbers are this run's:
- The broker was warm: warm_broker ran both floors until the broker's JIT compilers used under
  0.05 cores through a round (broker_warmup in inference.json). "broker jit" below is what
  they used during each run.
- The broker is the largest user of the cores at light load ("cpu" rows): at 5% load it takes
  more than the workers, and the machine is already well over half busy. At these rates most
  requests travel alone: one produce request from the load generator, one fetch by the
  worker, one by the reader, and for exactly-once a transaction per few requests
  (AddPartitionsToTxn, the broker's check of each output partition with the transaction
  coordinator, AddOffsetsToTxn, TxnOffsetCommit, EndTxn, the markers).
- The model is not the tail: in_worker (decode, validate, forward pass, encode) is a few ms at
  the median and in the slowest 1% at 5% and 25% load.
- Garbage collection is not the tail: after gc.freeze() at start, generation-0/1 collections
  take under 1-5 ms (gc0/gc1 rows) and the rare gen-2 ones under 7.5 ms (gc2).
- Exactly-once: a batch keeps growing while the one before it is written (stage fill), so it
  no longer waits for that transaction (stage wait near 0). What is left of the slowest 1% is
  the transaction itself (commit_and_read: AddOffsetsToTxn + TxnOffsetCommit, EndTxn, the
  markers that move the last stable offset; per batch, stages offsets and commit) and the one
  batch ahead of it (to_worker, to_writer). The transactional floor pays the same stages:
  compare p99 per level (p99_vs_floor in inference.json).
- At half load the slowest requests queue for the CPU before the loop picks them up
  (to_worker): the worker takes more of the 2 cores than its floor does (decode, validate,
  score, encode), next to the broker and the load generator.
- At-least-once: no transaction; its slowest requests wait before the worker picks them up.
- 2 workers on 2 cores: at their max sustained rate the machine is ~1.9 cores busy (the steps'
  cpu_cores in inference.json); a second worker process has no core of its own here.
"""

# Why a tail target can be missed here; written into the JSON only for the targets missed.
DELIVERY_WHY = {
    "exactly_once_p99_ms_at_5%_load": "an exactly-once result is readable only once its "
    "batch's transaction commits: AddOffsetsToTxn and TxnOffsetCommit (stage offsets), EndTxn "
    "and the commit markers that move the last stable offset (stage commit), and a request "
    "that arrives meanwhile rides in the next transaction (stage fill). The transactional "
    "floor (no model) pays the same: see "
    "its p99 and the slowest 1%'s stages in inference_profile.txt.",
    "exactly_once_p99_ms_at_50%_load": "at half the max sustained rate the 2 cores are shared "
    "by the broker, the worker and the one-process load generator: requests wait for the CPU "
    "before the worker picks them up (to_worker) and batches wait for the transaction before "
    "them; the transactional floor at the same rate shows what the transactions alone cost.",
    "at_least_once_p99_ms_at_5%_load": "see the slowest 1%'s stages and the cores used in "
    "inference_profile.txt, and the plain floor's p99 at the same rate: what the floor shows "
    "is Kafka's and this machine's, not the model's.",
    "worst_p99_vs_floor": "where a level's p99 exceeds its floor's by more than 1.5x, compare "
    "the two breakdowns in inference_profile.txt: decoding, validating, scoring and encoding "
    "take CPU the floor does not need, on the 2 cores the broker and the load generator share.",
}

DELIVERY_MODES = ("exactly_once", "at_least_once")
LOAD_LEVELS = {"5%": 0.05, "25%": 0.25, "50%": 0.5}
# Tail targets, per load level as a fraction of exactly-once's max sustained rate (1 worker),
# and the most a p99 may exceed its floor's at any level and worker count.
DELIVERY_TARGETS = {
    "exactly_once_p99_ms_at_5%_load": 25.0,
    "exactly_once_p99_ms_at_50%_load": 50.0,
    "at_least_once_p99_ms_at_5%_load": 10.0,
    "worst_p99_vs_floor": 1.5,
}


@dataclass(frozen=True)
class Plan:
    """How long each measurement runs."""

    backlog: int
    drains: int = 3
    half_load_s: float = 10.0
    lighter_load_s: float = 5.0
    step_s: float = 5.0
    warmup_s: float = 5.0
    """Before each latency level: seconds at its rate whose results are not counted."""
    broker_warmup_round_s: float = 3.0
    broker_warmup_max_s: float = 300.0
    """``warm_broker``: seconds per rate and floor in a round; the most it may take in all."""


QUICK = Plan(
    backlog=5_000,
    drains=1,
    half_load_s=3.0,
    lighter_load_s=2.0,
    step_s=2.0,
    warmup_s=1.0,
    broker_warmup_round_s=1.0,
    broker_warmup_max_s=30.0,
)


# --- the artifact -------------------------------------------------------------------------


def logged_artifact(workdir: Path) -> dict[str, Any]:
    """Train the credit package, log it to a file-store MLflow; the package and model URIs."""
    import mlflow

    from modelbus.packaging import package_sha256, resolve_package
    from modelbus.packaging.mlflow_model import log_package

    source = workdir / "credit-package"
    build_credit_package(source, name="credit", seed=1, n_rows=5000, epochs=60)
    tracking = f"sqlite:///{workdir / 'mlflow.db'}"
    mlflow.set_tracking_uri(tracking)
    experiment = mlflow.create_experiment(
        "inference-benchmark", artifact_location=(workdir / "artifacts").as_uri()
    )
    mlflow.set_experiment(experiment_id=experiment)
    with mlflow.start_run():
        logged = log_package(source, credit_contract())
    package = resolve_package(logged.package_uri)
    return {
        "tracking_uri": tracking,
        "model_uri": logged.model_uri,
        "package_dir": package,
        "sha256": package_sha256(package),
    }


# --- modelbus end to end ------------------------------------------------------------------


def _encoded_requests(codec: Any, model: str, count: int, prefix: str) -> list[tuple[str, bytes]]:
    rows, _ = credit_rows(2000, seed=3)
    return [
        (f"{prefix}{n}", encode_request(codec, model, f"{prefix}{n}", rows[n % len(rows)]))
        for n in range(count)
    ]


def _split_request(codec: Any, model: str, key: str, row: dict) -> tuple[bytes, bytes]:
    """A request's bytes before and after ``sent_at``, so sending stamps it for ~1 us."""
    known = codec.store.reader(TYPED_REQUEST)
    meta = new_meta("bench-producer").to_avro()
    sent_at = now_utc()
    full = codec.encode_record(
        {"meta": meta, "request_id": key, "model": model, "sent_at": sent_at, "features": row},
        known,
    )
    head = b"".join(
        [
            full[:10],
            avro_string(meta["event_id"]),
            zigzag(_ms(meta["occurred_at"])),
            avro_string(meta["producer"]),
            avro_string(meta["correlation_id"]),
            b"\x00",
            avro_string(key),
            avro_string(model),
        ]
    )
    stamp = zigzag(_ms(sent_at))
    if full[: len(head)] != head or full[len(head) : len(head) + len(stamp)] != stamp:
        raise RuntimeError("request layout changed; update the benchmark's sent_at patching")
    return head, full[len(head) + len(stamp) :]


def _ms(moment: Any) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


def _drain_rate(
    settings: KafkaSettings, model: str, backlog: list[tuple[str, bytes]]
) -> dict[str, Any]:
    """Produce a backlog as fast as possible; results/s while the workers drain it.

    Counted results: a read_committed reader of the predictions topic, positioned before the
    backlog is produced, counts the distinct request ids of this backlog it receives (dead
    letters and committed offsets are not counted).
    """
    topic = data_topic(model, "requests")
    wanted = {key.encode() for key, _ in backlog}
    reader = follow_from_now(
        settings.bootstrap_servers,
        data_topic(model, "predictions"),
        purpose="bench-drain",
        extra={"fetch.wait.max.ms": 5},
    )
    reader.consume(100, 1.0)
    seen: set[bytes] = set()
    results = [0]
    samples = [(time.perf_counter(), 0)]

    def count() -> None:
        deadline = time.monotonic() + 600
        while len(seen) < len(wanted) and time.monotonic() < deadline:
            messages = reader.consume(1000, 0) or [reader.poll(0.05)]
            for message in filter(None, messages):
                if message.error() is None and message.key() in wanted:
                    seen.add(message.key())
                    results[0] += 1
            samples.append((time.perf_counter(), len(seen)))

    counter = threading.Thread(target=count)
    counter.start()
    producer = Producer({**client_config(settings.bootstrap_servers), "linger.ms": 20})
    for key, value in backlog:
        while True:
            try:
                producer.produce(topic, value, key.encode())
                break
            except BufferError:
                producer.poll(0.01)
    producer.flush()
    counter.join()
    reader.close()
    if len(seen) != len(wanted):
        raise RuntimeError(f"{len(wanted) - len(seen)} of {len(wanted)} results never arrived")
    low, high = 0.1 * len(backlog), 0.9 * len(backlog)
    start = [s for s in samples if s[1] < low][-1]
    end = next(s for s in samples if s[1] >= high)
    return {
        "backlog": len(backlog),
        "predictions_per_s": round((end[1] - start[1]) / max(end[0] - start[0], 1e-3)),
        "results_counted": len(seen),
        "duplicate_results": results[0] - len(seen),
        "note": "distinct request ids of this backlog counted in committed PredictionResults "
        "by a read_committed reader started before the backlog is produced; rate from the "
        "last count under 10% of the backlog to the first over 90%",
    }


def _paced_latency(
    settings: KafkaSettings,
    model: str,
    codec: Any,
    rate_per_s: float,
    seconds: float,
    metrics_urls: list[str] | None = None,
    warmup_s: float = 0.0,
    cpu_of: dict[str, list[int]] | None = None,
) -> dict[str, Any]:
    """``_paced_once`` for ``seconds``, after ``warmup_s`` at the same rate whose results are
    not counted (only summarised under ``warmup``).

    A level measures the steady state at its rate. Right after a change of pace (a drain, a
    new worker process, a broker whose JIT has not yet compiled the path of one-message
    requests) the first seconds carry a transient of their own: on a freshly started broker,
    a plain loop's first seconds at 518/s took up to 750 ms while its next 15 s had a p99 of
    11-19 ms.
    """
    warmup = None
    if warmup_s > 0:
        first = _paced_once(settings, model, codec, rate_per_s, warmup_s)
        warmup = {
            "seconds": warmup_s,
            **{
                key: first[key]
                for key in ("requests", "results_seen", "p50_ms", "p99_ms", "max_ms")
            },
        }
    run = _paced_once(settings, model, codec, rate_per_s, seconds, metrics_urls, cpu_of)
    return {**run, "warmup": warmup} if warmup else run


def _paced_once(
    settings: KafkaSettings,
    model: str,
    codec: Any,
    rate_per_s: float,
    seconds: float,
    metrics_urls: list[str] | None = None,
    cpu_of: dict[str, list[int]] | None = None,
) -> dict[str, Any]:
    """Send at a fixed rate; ms from produce() to the committed result reaching a reader.

    Requests are stamped (``sent_at``) as they are sent, so each result's latency splits into
    stages (benchmarks/latency.py); ``breakdown`` gives the slowest 1%'s. With the workers'
    ``metrics_urls``, ``stages_per_batch`` gives their per-batch stage histograms over the run;
    with ``cpu_of`` (name -> pids), ``cpu_cores`` gives the cores each group and this process
    (the load generator) used from the first send to the last result (benchmarks/cpu.py).
    """
    topic = data_topic(model, "requests")
    reader = follow_from_now(
        settings.bootstrap_servers,
        data_topic(model, "predictions"),
        purpose="bench-reader",
        extra={"fetch.wait.max.ms": 5},
    )
    reader.consume(100, 1.0)
    count = max(int(rate_per_s * seconds), 100)
    rows, _ = credit_rows(1000, seed=3)
    prefix = uuid.uuid4().hex[:6]
    keys = [f"{prefix}-{index}" for index in range(count)]
    parts = [_split_request(codec, model, key, rows[i % len(rows)]) for i, key in enumerate(keys)]
    sent: dict[bytes, tuple[float, int]] = {}
    seen: list[Seen] = []
    finished_at: list[float] = []
    before = [stage_counts(url) for url in metrics_urls or []]

    def read() -> None:
        while len(seen) < count and not (finished_at and time.perf_counter() > finished_at[0] + 10):
            # consume(n, timeout) waits to fill n: take what is there, else wait for one.
            messages = reader.consume(1000, 0) or [reader.poll(0.05)]
            now, wall = time.perf_counter(), time.time() * 1000
            for message in filter(None, messages):
                key = message.key()
                if message.error() is None and key in sent:
                    sent_at, sent_ms = sent[key]
                    produced_ms = message.timestamp()[1]
                    value = message.value() or b""
                    seen.append(Seen(value, sent_ms, produced_ms, wall, (now - sent_at) * 1000))

    thread = threading.Thread(target=read)
    thread.start()
    producer = Producer({**client_config(settings.bootstrap_servers), "linger.ms": 1})
    # The load generator's own garbage collections must not pause the reader mid-measurement.
    gc.collect()
    gc.freeze()
    brokers = (cpu_of or {}).get("broker", [])
    meter = CpuMeter(
        {**(cpu_of or {}), "load_generator": [os.getpid()]},
        jit_of={"broker": brokers} if brokers else {},
    )
    meter.start()
    start = time.perf_counter()
    for index, (key, (head, tail)) in enumerate(zip(keys, parts, strict=True)):
        pause = start + index / rate_per_s - time.perf_counter()
        if pause > 0.001:
            time.sleep(pause)
        encoded_key = key.encode()
        sent_ms = int(time.time() * 1000)
        value = head + zigzag(sent_ms) + tail
        sent[encoded_key] = (time.perf_counter(), sent_ms)
        producer.produce(topic, value, encoded_key)
        producer.poll(0)
    producer.flush()
    elapsed = time.perf_counter() - start
    finished_at.append(time.perf_counter())
    thread.join()
    cpu_cores = meter.cores()
    gc.unfreeze()
    reader.close()
    values = np.asarray([item.latency_ms for item in seen])
    by_send = [item.latency_ms for item in sorted(seen, key=lambda item: item.sent_ms)]
    quarter = max(len(by_send) // 4, 1)
    run = {
        "offered_per_s": round(rate_per_s),
        "achieved_send_per_s": round(count / elapsed),
        "requests": count,
        "results_seen": len(seen),
        "p50_ms": round(float(np.percentile(values, 50)), 2),
        "p99_ms": round(float(np.percentile(values, 99)), 2),
        "max_ms": round(float(values.max()), 2),
        # A rate the workers do not keep up with shows as latency growing over the run.
        "p50_ms_first_quarter": round(float(np.median(by_send[:quarter])), 2),
        "p50_ms_last_quarter": round(float(np.median(by_send[-quarter:])), 2),
        "breakdown": slowest_breakdown(seen, codec),
        "cpu_cores": cpu_cores,
    }
    if metrics_urls:
        run["stages_per_batch"] = workers_stage_quantiles(metrics_urls, before)
    return run


def modelbus_end_to_end(
    settings: KafkaSettings,
    artifact: dict[str, Any],
    workers: int,
    plan: Plan,
    delivery: str = "exactly_once",
    loads_of_per_s: float | None = None,
) -> dict[str, Any]:
    """Start ``workers`` worker processes on a fresh model; throughput, then paced latency.

    Latency is measured at 50%, 25% and 5% of ``loads_of_per_s`` (another run's max sustained
    rate, so two delivery modes meet the same offered loads), else of this run's own.
    """
    backlog = plan.backlog
    model = f"bench{uuid.uuid4().hex[:8]}"
    create_model_topics(settings, model, PARTITIONS)
    codec = request_codec()
    RequestProducer(settings, codec)  # publishes the request schemas
    publish_lifecycle(
        settings, codec, registered(model, 1, artifact["package_dir"], artifact["sha256"])
    )
    group = f"modelbus-inference-{model}"
    env = {
        "MODELBUS_INFERENCE_MAX_BATCH_SIZE": str(SERVICE_DEFAULTS["max_batch_size"]),
        "MODELBUS_INFERENCE_MAX_WAIT_MS": str(SERVICE_DEFAULTS["max_wait_ms"]),
        "MODELBUS_INFERENCE_DELIVERY": delivery,
    }
    ports = [free_port() for _ in range(workers)]
    metrics_urls = [f"http://127.0.0.1:{port}/metrics" for port in ports]
    processes = [
        start_worker(settings.bootstrap_servers, model, index=i, http_port=port, **env)
        for i, port in enumerate(ports)
    ]
    try:
        deadline = time.monotonic() + 120
        while len(lifecycle_events(settings.bootstrap_servers, codec, model, (t.ModelLoaded,))) < (
            workers
        ):
            if time.monotonic() > deadline:
                raise TimeoutError("workers did not load the model in 120 s")
            time.sleep(0.5)
        _wait_for_members(settings.bootstrap_servers, group, workers)
        cpu_of = _cpu_groups(settings, processes)
        warmup = _encoded_requests(codec, model, 5_000, "warm")
        _drain_rate(settings, model, warmup)
        who = f"{workers} worker(s), {delivery}"
        log(f"{who} warm; draining a backlog of {backlog}")
        # Median of three drains: on 2 shared cores one drain swings with the neighbours.
        drains = []
        for attempt in range(plan.drains):
            requests = _encoded_requests(codec, model, backlog, f"b{attempt}-")
            drains.append(_drain_rate(settings, model, requests))
        burst = sorted(drains, key=lambda d: d["predictions_per_s"])[len(drains) // 2]
        burst = {**burst, "all_drains_per_s": [d["predictions_per_s"] for d in drains]}
        log(f"{who} drain a backlog at {burst['predictions_per_s']}/s")
        sustained, steps = _sustained_rate(
            settings, model, codec, burst["predictions_per_s"], plan.step_s, cpu_of
        )
        log(f"{who} keep up with {sustained:.0f}/s")
        loads_of = loads_of_per_s or sustained
        half = loads_of / 2
        latency = _paced_latency(
            settings, model, codec, half, plan.half_load_s, metrics_urls, plan.warmup_s, cpu_of
        )
        log(f"{who} at {half:.0f}/s: p50 {latency['p50_ms']} p99 {latency['p99_ms']}")
        lighter = {
            f"{fraction:.0%}": _paced_latency(
                settings,
                model,
                codec,
                loads_of * fraction,
                plan.lighter_load_s,
                metrics_urls,
                plan.warmup_s,
                cpu_of,
            )
            for fraction in (0.25, 0.05)
        }
    finally:
        stop_workers(processes)
    return {
        "workers": workers,
        "delivery": delivery,
        "configuration": {
            "worker_processes": workers,
            "request_partitions": PARTITIONS,
            **SERVICE_DEFAULTS,
            "delivery": delivery,
            "load_generator": LOAD_GENERATOR,
        },
        "backlog_drain": burst,
        "max_sustained": {
            "predictions_per_s": round(sustained),
            "note": "the rate the load generator sent in the fastest step whose results all "
            "arrived with max latency under 1 s and a median latency that grew by less than "
            f"{KEPT_UP_GROWTH_MS:.0f} ms from the step's first quarter to its last (the "
            "load generator shares the cores): offered from 90% of "
            "the drain rate down in steps of 15%, a step failed by a single stall tried "
            "again, then two halvings between the first rate kept up and the one above it",
            "steps": steps,
        },
        "latency_loads_relative_to_per_s": round(loads_of),
        "half_load_latency": latency,
        "lighter_load_latency": lighter,
    }


def _model_topics(settings: KafkaSettings, prefix: str) -> tuple[str, Any]:
    """A fresh model name with its topics, and the request codec (schemas published)."""
    model = f"{prefix}{uuid.uuid4().hex[:8]}"
    create_model_topics(settings, model, PARTITIONS)
    codec = request_codec()
    RequestProducer(settings, codec)  # publishes the request schemas
    return model, codec


def _start_floor(
    settings: KafkaSettings, model: str, delivery: str, index: int = 0, metrics_port: int = 0
) -> subprocess.Popen[bytes]:
    """One benchmarks/floor.py process (worker slot ``index``) for ``model``."""
    env = {
        **os.environ,
        "MODELBUS_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "MODELBUS_INFERENCE_SESSION_TIMEOUT_MS": "6000",
    }
    return subprocess.Popen(
        [
            *(sys.executable, "-m", "benchmarks.floor", "--model", model),
            *("--delivery", delivery, "--worker-index", str(index)),
            *("--metrics-port", str(metrics_port)),
        ],
        env=env,
        cwd=REPO,
    )


WARM_RATES = (500.0, 2_500.0, 10_000.0, 20_000.0)
WARM_JIT_CORES = 0.05
"""The broker counts as warm once its JIT compilers used under this many cores in a round."""


def warm_broker(settings: KafkaSettings, plan: Plan) -> dict[str, Any]:
    """Both floors (one process each) at WARM_RATES, round after round, until the broker's JIT
    compilers are quiet (under WARM_JIT_CORES through a round) or ``plan.broker_warmup_max_s``
    has passed; nothing of it is measured.

    A broker in production has run for days with its hot paths compiled. A freshly started one
    compiles them for minutes under load: at 387 requests/s through one exactly-once worker, its
    JIT took 0.68 cores in the first 15 s and under 0.03 after ~75 s, while the p99 went from 47
    to 17-24 ms (benchmarks/cpu.py). Measured before it settles, a level measures the JVM.
    """
    brokers = _cpu_groups(settings, [])["broker"]
    if not brokers:
        return {"skipped": "no local broker process whose JIT could be watched"}
    targets = [(_model_topics(settings, "warm"), delivery) for delivery in DELIVERY_MODES]
    processes = [
        _start_floor(settings, model, delivery, index)
        for index, ((model, _), delivery) in enumerate(targets)
    ]
    rounds: list[dict[str, Any]] = []
    started = time.monotonic()
    try:
        for (model, _), _delivery in targets:
            _wait_for_members(settings.bootstrap_servers, f"modelbus-inference-{model}", 1)
        while True:
            meter = CpuMeter({"broker": brokers}, jit_of={"broker": brokers})
            meter.start()
            for rate in WARM_RATES:
                for (model, codec), _delivery in targets:
                    _paced_once(settings, model, codec, rate, plan.broker_warmup_round_s)
            cores = meter.cores()
            rounds.append(
                {"broker_cores": cores["broker"], "broker_jit_cores": cores["broker_jit"]}
            )
            log(f"warming the broker: its JIT used {cores['broker_jit']} cores this round")
            warm = (cores["broker_jit"] or 0.0) < WARM_JIT_CORES
            if warm or time.monotonic() - started > plan.broker_warmup_max_s:
                break
    finally:
        stop_workers(processes)
    return {
        "rates_per_s": WARM_RATES,
        "seconds_per_rate_and_floor": plan.broker_warmup_round_s,
        "warm_below_jit_cores": WARM_JIT_CORES,
        "warm": warm,
        "seconds": round(time.monotonic() - started),
        "rounds": rounds,
    }


def floor_latency(
    settings: KafkaSettings, workers: int, delivery: str, loads_of_per_s: float, plan: Plan
) -> dict[str, Any]:
    """benchmarks/floor.py (the stream loop with no model) at the load levels' rates."""
    model, codec = _model_topics(settings, "floor")
    ports = [free_port() for _ in range(workers)]
    processes = [
        _start_floor(settings, model, delivery, index, port) for index, port in enumerate(ports)
    ]
    metrics_urls = [f"http://127.0.0.1:{port}/metrics" for port in ports]
    try:
        _wait_for_members(settings.bootstrap_servers, f"modelbus-inference-{model}", workers)
        cpu_of = _cpu_groups(settings, processes)
        _drain_rate(settings, model, _encoded_requests(codec, model, 5_000, "warm"))
        levels = {
            level: _paced_latency(
                settings,
                model,
                codec,
                loads_of_per_s * fraction,
                plan.half_load_s if level == "50%" else plan.lighter_load_s,
                metrics_urls,
                plan.warmup_s,
                cpu_of,
            )
            for level, fraction in LOAD_LEVELS.items()
        }
    finally:
        stop_workers(processes)
    for level, paced in levels.items():
        log(
            f"floor {workers} worker(s), {delivery} at {level}: "
            f"p50 {paced['p50_ms']} p99 {paced['p99_ms']}"
        )
    return {"workers": workers, "delivery": delivery, "by_load": levels}


def delivery_runs(
    settings: KafkaSettings, artifact: dict[str, Any], plan: Plan, worker_counts: tuple[int, ...]
) -> tuple[dict[str, dict[str, dict[str, Any]]], dict[str, dict[str, dict[str, Any]]]]:
    """(mode -> worker count -> modelbus_end_to_end, mode -> worker count -> floor_latency);
    at-least-once and both floors meet exactly-once's load levels."""
    runs: dict[str, dict[str, dict[str, Any]]] = {mode: {} for mode in DELIVERY_MODES}
    floors: dict[str, dict[str, dict[str, Any]]] = {mode: {} for mode in DELIVERY_MODES}
    for workers in worker_counts:
        exactly = modelbus_end_to_end(settings, artifact, workers, plan, "exactly_once")
        runs["exactly_once"][str(workers)] = exactly
        loads_of = exactly["max_sustained"]["predictions_per_s"]
        runs["at_least_once"][str(workers)] = modelbus_end_to_end(
            settings, artifact, workers, plan, "at_least_once", loads_of_per_s=loads_of
        )
        for mode in DELIVERY_MODES:
            floors[mode][str(workers)] = floor_latency(settings, workers, mode, loads_of, plan)
    return runs, floors


def _level(run: dict[str, Any], level: str) -> dict[str, Any]:
    paced = run["half_load_latency"] if level == "50%" else run["lighter_load_latency"][level]
    return dict(paced)


def compare_delivery_modes(
    runs: dict[str, dict[str, dict[str, Any]]], floors: dict[str, dict[str, dict[str, Any]]]
) -> dict[str, Any]:
    """Per worker count and load level: p50/p99/max of each mode and of its floor, p99(modelbus)
    / p99(floor of the same mode), and p99 at-least-once / p99 exactly-once (all measured at
    the same offered rate)."""
    compared: dict[str, Any] = {}
    ratios: dict[str, float] = {}
    for workers in runs["exactly_once"]:
        levels: dict[str, Any] = {}
        for level in LOAD_LEVELS:
            figures: dict[str, Any] = {}
            for mode in DELIVERY_MODES:
                paced = _level(runs[mode][workers], level)
                floor = floors[mode][workers]["by_load"][level]
                vs_floor = round(paced["p99_ms"] / max(floor["p99_ms"], 1e-9), 3)
                ratios[f"{workers}w_{mode}_{level}"] = vs_floor
                figures[mode] = {
                    **{k: paced[k] for k in ("offered_per_s", "p50_ms", "p99_ms", "max_ms")},
                    "floor": {k: floor[k] for k in ("offered_per_s", "p50_ms", "p99_ms", "max_ms")},
                    "p99_vs_floor": vs_floor,
                }
            ratio = figures["at_least_once"]["p99_ms"] / max(
                figures["exactly_once"]["p99_ms"], 1e-9
            )
            levels[level] = {**figures, "p99_at_least_once_vs_exactly_once": round(ratio, 3)}
        throughput = {
            mode: {
                "backlog_drain_per_s": runs[mode][workers]["backlog_drain"]["predictions_per_s"],
                "max_sustained_per_s": runs[mode][workers]["max_sustained"]["predictions_per_s"],
            }
            for mode in DELIVERY_MODES
        }
        compared[workers] = {"by_load": levels, "throughput": throughput}
    one = compared["1"]["by_load"]
    reached = {
        "exactly_once_p99_ms_at_5%_load": one["5%"]["exactly_once"]["p99_ms"],
        "exactly_once_p99_ms_at_50%_load": one["50%"]["exactly_once"]["p99_ms"],
        "at_least_once_p99_ms_at_5%_load": one["5%"]["at_least_once"]["p99_ms"],
        "worst_p99_vs_floor": max(ratios.values()),
    }
    met = {name: reached[name] <= target for name, target in DELIVERY_TARGETS.items()}
    return {
        **compared,
        "note": "load levels are fractions of exactly-once's max sustained rate (per worker "
        "count) for both modes and both floors; latency is send -> result seen by a "
        "read_committed reader (for at-least-once and the plain floor, as soon as it is "
        "delivered). The floor of exactly_once is the transactional consume -> produce loop, "
        "of at_least_once the plain one (benchmarks/floor.py: inference's stream loop with "
        "no decode, model or encode). Each level is measured after a warm-up at its rate "
        "(Plan.warmup_s, 5 s) whose results are not counted; the warm-up's own p50/p99 are "
        "under each paced run's 'warmup'.",
        "p99_vs_floor_by_level": ratios,
        "targets": DELIVERY_TARGETS,
        "reached": reached,
        "met": met,
        "why_missed": {name: DELIVERY_WHY[name] for name, ok in met.items() if not ok},
    }


def paced_runs(
    runs: dict[str, dict[str, dict[str, Any]]], floors: dict[str, dict[str, dict[str, Any]]]
) -> dict[str, dict[str, Any]]:
    """label -> paced run, for every mode, worker count, load level and floor."""
    labelled = {}
    for mode in DELIVERY_MODES:
        for workers, run in runs[mode].items():
            for level in LOAD_LEVELS:
                labelled[f"modelbus {mode}, {workers} worker(s), {level} load"] = _level(run, level)
                floor = floors[mode][workers]["by_load"][level]
                labelled[f"floor {mode}, {workers} worker(s), {level} load"] = floor
    return labelled


def _cpu_groups(
    settings: KafkaSettings, processes: list[subprocess.Popen[bytes]]
) -> dict[str, list[int]]:
    """The processes a paced run's ``cpu_cores`` covers: the local broker(s) of the bootstrap
    list (none found: no "broker" figure) and the workers under test."""
    ports = [int(server.rsplit(":", 1)[1]) for server in settings.bootstrap_servers.split(",")]
    brokers = [pid for pid in map(broker_pid, ports) if pid is not None]
    return {"broker": brokers, "workers": [process.pid for process in processes]}


def _wait_for_members(bootstrap: str, group: str, workers: int) -> None:
    """Measure only once every worker holds partitions (no rebalance mid-measurement)."""
    admin = AdminClient(client_config(bootstrap))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        description = admin.describe_consumer_groups([group])[group].result()
        holding = [m for m in description.members if m.assignment.topic_partitions]
        if len(holding) == workers:
            return
        time.sleep(0.5)
    raise TimeoutError(f"{workers} workers did not all join {group} in 120 s")


KEPT_UP_GROWTH_MS = 50.0
"""The most the median latency may grow from a step's first quarter to its last: a rate 2%
over what the workers drain grows it by ~75 ms across a 5 s step."""


def _steady(run: dict[str, Any]) -> bool:
    """Every result arrived and the median latency did not grow over the step."""
    growth = run["p50_ms_last_quarter"] - run["p50_ms_first_quarter"]
    return run["results_seen"] == run["requests"] and growth < KEPT_UP_GROWTH_MS


def _kept_up(run: dict[str, Any]) -> bool:
    """Steady, and no result took a second."""
    return _steady(run) and run["max_ms"] < 1000


def _stalled_once(run: dict[str, Any]) -> bool:
    """Failed on its slowest request alone: steady, with the p99 under a second (one stall,
    e.g. a broker GC or a log roll, not a backlog)."""
    return _steady(run) and run["p99_ms"] < 1000 <= run["max_ms"]


def _sustained_rate(
    settings: KafkaSettings,
    model: str,
    codec: Any,
    drain_rate: float,
    step_s: float = 5.0,
    cpu_of: dict[str, list[int]] | None = None,
) -> tuple[float, list[dict[str, Any]]]:
    """The highest rate the workers keep up with (``_kept_up`` over ``step_s``): the rate the
    load generator actually sent in the fastest step kept up.

    Rates are offered from 90% of the drain rate down in steps of 15% of it; a step that fails
    on a single stall (``_stalled_once``) is tried once more before going down. Between the
    first rate kept up and the one above it, two halvings narrow the answer to ~4% of the
    drain rate. The sent rate, not the offered one, is the answer: on 2 shared cores the load
    generator falls short of fast rates (it once sent 3,099/s of 3,644/s asked), and a step
    that passes shows the workers keeping up with what was sent, not with what was asked.
    """
    steps: list[dict[str, Any]] = []

    def attempt(rate: float) -> bool:
        run = _paced_latency(settings, model, codec, rate, step_s, cpu_of=cpu_of)
        if _stalled_once(run):
            steps.append({**run, "kept_up": False, "retried": "one stall over 1 s"})
            run = _paced_latency(settings, model, codec, rate, step_s, cpu_of=cpu_of)
        kept_up = _kept_up(run)
        steps.append({**run, "kept_up": kept_up})
        return kept_up

    kept, failed = 0.0, None
    for fraction in (0.9, 0.75, 0.6, 0.45, 0.3, 0.15):
        rate = drain_rate * fraction
        if attempt(rate):
            kept = rate
            break
        failed = rate
    else:
        return steps[-1]["achieved_send_per_s"], steps
    if failed is not None:
        for _ in range(2):
            middle = (kept + failed) / 2
            if attempt(middle):
                kept = middle
            else:
                failed = middle
    return max(step["achieved_send_per_s"] for step in steps if step["kept_up"]), steps


# --- mlflow models serve ------------------------------------------------------------------


def _load(url: str, body: bytes, threads: int, seconds: float) -> dict[str, Any]:
    counts = [0] * threads
    errors = [0] * threads
    latencies: list[list[float]] = [[] for _ in range(threads)]
    stop_at = time.perf_counter() + seconds

    def worker(index: int) -> None:
        with httpx.Client(timeout=30) as client:
            while time.perf_counter() < stop_at:
                started = time.perf_counter()
                response = client.post(
                    url, content=body, headers={"Content-Type": "application/json"}
                )
                latencies[index].append((time.perf_counter() - started) * 1000)
                if response.status_code == 200:
                    counts[index] += 1
                else:
                    errors[index] += 1

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    started = time.perf_counter()
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    elapsed = time.perf_counter() - started
    values = np.asarray([v for group in latencies for v in group])
    return {
        "requests_per_s": round(sum(counts) / elapsed, 1),
        "errors": sum(errors),
        "p50_ms": round(float(np.percentile(values, 50)), 2),
        "p99_ms": round(float(np.percentile(values, 99)), 2),
    }


def mlflow_serve(artifact: dict[str, Any], *, threads: int, seconds: float) -> dict[str, Any]:
    """Throughput of ``mlflow models serve`` on the same artifact, 1-row and 100-row bodies."""
    port = free_port()
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": artifact["tracking_uri"],
        "MODELBUS_TORCH_THREADS": "1",
        # mlflow starts `uvicorn` by name: the venv's bin must be on PATH.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "models",
            "serve",
            "-m",
            artifact["model_uri"],
            "--env-manager",
            "local",
            "-p",
            str(port),
            "-w",
            "1",
        ],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/ping", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"mlflow models serve did not start: {server.stderr.read().decode()[-2000:]}"  # type: ignore[union-attr]
                )
            time.sleep(0.5)
        rows, _ = credit_rows(100, seed=3)
        single = json.dumps({"dataframe_records": rows[:1]}).encode()
        hundred = json.dumps({"dataframe_records": rows}).encode()
        check = httpx.post(
            f"{url}/invocations", content=single, headers={"Content-Type": "application/json"}
        )
        check.raise_for_status()
        _load(f"{url}/invocations", single, threads, 2)  # warm-up
        one_row = _load(f"{url}/invocations", single, threads, seconds)
        log(f"mlflow serve 1-row: {one_row['requests_per_s']} req/s")
        rows_100 = _load(f"{url}/invocations", hundred, threads, seconds)
        rows_100["rows_per_s"] = round(rows_100["requests_per_s"] * 100, 1)
        log(f"mlflow serve 100-row: {rows_100['rows_per_s']} rows/s")
    finally:
        _stop_group(server)
    return {
        "server": "mlflow models serve --env-manager local -w 1 (uvicorn), torch threads 1",
        "client": f"{threads} threads, httpx keep-alive, {seconds:.0f} s per shape",
        "single_row": {**one_row, "rows_per_s": one_row["requests_per_s"]},
        "rows_100": rows_100,
        "first_response": check.json(),
    }


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


# --- profile ------------------------------------------------------------------------------


def profile_worker(settings: KafkaSettings, artifact: dict[str, Any], backlog: int) -> str:
    """pyinstrument text profile of one in-process worker draining a backlog."""
    from pyinstrument import Profiler

    from modelbus_inference.bootstrap import bootstrap
    from modelbus_inference.config import Settings

    model = f"bench{uuid.uuid4().hex[:8]}"
    create_model_topics(settings, model, PARTITIONS)
    codec = request_codec()
    RequestProducer(settings, codec)
    publish_lifecycle(
        settings, codec, registered(model, 1, artifact["package_dir"], artifact["sha256"])
    )
    worker = bootstrap(
        Settings(
            kafka=settings,
            model=model,
            contract=CONTRACT,
            http_port=0,
            max_batch_size=1000,
            serve_latest_without_routes=True,
        )
    )
    worker.lifecycle.replay(30)
    worker.stream.start()
    producer = Producer({**client_config(settings.bootstrap_servers), "linger.ms": 20})
    for key, value in _encoded_requests(codec, model, backlog, "q"):
        while True:
            try:
                producer.produce(data_topic(model, "requests"), value, key.encode())
                break
            except BufferError:
                producer.poll(0.01)
    producer.flush()
    profiler = Profiler(interval=0.0005)
    profiler.start()
    while worker.stream.processed < backlog:
        worker.stream.run_once()
    profiler.stop()
    worker.stream.close()
    return profiler.output_text(unicode=False, color=False, show_all=False)


# --- main ---------------------------------------------------------------------------------


def main() -> None:
    """Run every measurement and write benchmarks/results/inference.json."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backlog", type=int, default=60_000)
    parser.add_argument("--http-seconds", type=float, default=10.0)
    parser.add_argument("--http-threads", type=int, default=8)
    parser.add_argument(
        "--profile",
        action="store_true",
        help="add a pyinstrument CPU profile of one worker to results/inference_profile.txt",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 1 worker, both delivery modes, short steps; JSON to a temporary file",
    )
    args = parser.parse_args()
    settings = KafkaSettings(data_partitions=PARTITIONS)
    load_before = os.getloadavg()
    workdir = Path(tempfile.mkdtemp(prefix="modelbus-bench-inference-"))
    log(f"training and logging the credit artifact in {workdir}")
    artifact = logged_artifact(workdir)
    plan = QUICK if args.quick else Plan(backlog=args.backlog)
    log("warming the broker (until its JIT compilers are quiet)")
    broker_warmup = warm_broker(settings, plan)
    if args.quick:
        runs, floors = delivery_runs(settings, artifact, plan, (1,))
        quick = {
            "quick": True,
            "plan": plan.__dict__,
            "broker_warmup": broker_warmup,
            "modelbus_by_delivery": runs,
        }
        compared = compare_delivery_modes(runs, floors)
        path = workdir / "inference_quick.json"
        path.write_text(json.dumps({**quick, "floors": floors, "delivery_modes": compared}))
        print(render(paced_runs(runs, floors), FINDINGS))
        log(f"quick run written to {path} (results/ left as it was)")
        return

    log("raw broker pass-through")
    raw = {
        "plain": passthrough(settings.bootstrap_servers, messages=100_000, transactional=False),
        "transactional_1000_per_txn": passthrough(
            settings.bootstrap_servers, messages=100_000, transactional=True
        ),
    }
    runs, floors = delivery_runs(settings, artifact, plan, (1, 2))
    delivery_modes = compare_delivery_modes(runs, floors)
    modelbus = runs["exactly_once"]
    log("mlflow models serve")
    mlflow = mlflow_serve(artifact, threads=args.http_threads, seconds=args.http_seconds)
    profile_path = RESULTS / "inference_profile.txt"
    profile = render(paced_runs(runs, floors), FINDINGS)
    if args.profile:
        log("profiling one worker")
        cpu = profile_worker(settings, artifact, 30_000)
        profile += f"\n== pyinstrument: one in-process worker draining 30,000 requests\n{cpu}"
    profile_path.write_text(profile)

    one = modelbus["1"]["max_sustained"]["predictions_per_s"]
    two = modelbus["2"]["max_sustained"]["predictions_per_s"]
    drain_one = modelbus["1"]["backlog_drain"]["predictions_per_s"]
    drain_two = modelbus["2"]["backlog_drain"]["predictions_per_s"]
    reached = {
        # 1 modelbus worker process against mlflow's 1 worker process.
        "vs_mlflow_single_row_throughput": round(one / mlflow["single_row"]["rows_per_s"], 2),
        "vs_mlflow_100_row_throughput": round(one / mlflow["rows_100"]["rows_per_s"], 2),
        # The raw pass-through (1 process) drains a backlog: compare 1 worker draining one.
        "vs_raw_passthrough": round(drain_one / raw["plain"]["messages_per_s"], 3),
        "vs_raw_transactional_passthrough": round(
            drain_one / raw["transactional_1000_per_txn"]["messages_per_s"], 3
        ),
        "p99_ms_at_half_load": modelbus["1"]["half_load_latency"]["p99_ms"],
        "two_workers_vs_one": round(two / one, 2),
        "two_workers_vs_one_backlog_drain": round(drain_two / drain_one, 2),
    }
    defaults = ", ".join(f"{k}={v}" for k, v in SERVICE_DEFAULTS.items())
    mlflow_side = (
        f"mlflow models serve -w 1, torch threads 1, driven by {args.http_threads} httpx "
        "threads in one Python process (closed loop, keep-alive)"
    )
    modelbus_side = (
        f"1 modelbus worker process, service defaults ({defaults}), {PARTITIONS} partitions, "
        "paced max sustained rate (max latency < 1 s) from one Python producer + one "
        "read_committed result reader (open loop)"
    )
    configuration = {
        "vs_mlflow_single_row_throughput": f"{modelbus_side} vs {mlflow_side}, 1-row bodies",
        "vs_mlflow_100_row_throughput": f"{modelbus_side} vs {mlflow_side}, 100-row bodies",
        "vs_raw_passthrough": f"1 worker process draining a {args.backlog} backlog (counted "
        "results) vs 1 pass-through process (consume + produce, no transactions)",
        "vs_raw_transactional_passthrough": f"1 worker process draining a {args.backlog} "
        "backlog vs 1 pass-through process with 1000 messages per transaction",
        "p99_ms_at_half_load": f"1 worker process, service defaults ({defaults}), paced at "
        "half its max sustained rate",
        "two_workers_vs_one": "paced max sustained rate, 2 worker processes vs 1, same "
        "defaults and load generator",
        "two_workers_vs_one_backlog_drain": "backlog drain, 2 worker processes vs 1",
    }
    met = {
        name: (reached[name] <= target if name.startswith("p99") else reached[name] >= target)
        for name, target in TARGETS.items()
    }
    result = {
        "model": "credit (torch-mlp 32-16, 9 contract features)",
        "load_average_at_start_1_5_15": load_before,
        "broker_warmup": broker_warmup,
        "modelbus": modelbus,
        "modelbus_at_least_once": runs["at_least_once"],
        "floors": floors,
        "delivery_modes": delivery_modes,
        "mlflow_serve": mlflow,
        "raw_broker_passthrough": raw,
        "ratios": {
            "reached": reached,
            "configuration": configuration,
            "load_generator_difference": "modelbus is driven open loop by one Python process "
            "producing to Kafka at a fixed rate and reading committed results; mlflow is "
            f"driven closed loop by {args.http_threads} httpx threads (each waits for its "
            "answer). Both generators share the same 2 cores with the server under test.",
            "targets": TARGETS,
            "met": met,
            "why_short": {name: WHY_SHORT[name] for name, ok in met.items() if not ok},
        },
        "profile": str(profile_path.relative_to(REPO)),
        "load_average_1_5_15": {"before": load_before, "after": os.getloadavg()},
    }
    path = write_result("inference", result)
    print(path.read_text())


if __name__ == "__main__":
    main()

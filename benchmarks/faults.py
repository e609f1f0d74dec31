"""Inference under faults, and a soak -> results/faults.json.

One inference worker process (exactly-once delivery, the default) serves a registered credit
package on a broker of this benchmark's own (infra/kafka/kafka.sh on free ports, under a
temporary run directory; the shared brokers are never touched, since this one is stopped and
killed). A producer thread sends requests at a fixed rate the whole time; a read_committed
reader, assigned from the start of the predictions topic, records when each request's
committed results arrive (results are keyed by request id). The faults, one after another:

1. the broker stopped gracefully (SIGTERM), started again after the outage;
2. the broker killed (SIGKILL), started again after the outage;
3. the worker SIGKILLed and its slot (same worker index, so the same transactional id and
   static membership) started again at once, as the service's supervisor does;
4. 10,000 distinct unknown schema fingerprints interleaved with normal requests, against a
   quiet phase at the same rate.

Then a soak at the same rate: the worker's RSS and its group's consumer lag every 10 s.

``python -m benchmarks.faults [--soak-minutes 30] [--rate N] [--quick]``. The rate defaults
to half of results/inference.json's 1-worker max sustained rate (1000/s if that file is
absent). ``--quick`` is a development run (5 s outages, a 1-minute soak) whose JSON goes to a
temporary file, never to results/. ``--soak-minutes 0`` skips the soak.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from benchmarks.common import RESULTS, log, write_result
from modelbus.bus.reading import read_only_consumer, read_topic, watermarks
from modelbus.bus.security import client_config
from modelbus.bus.topics import data_topic, dlq_topic_for
from modelbus.config import KafkaSettings
from modelbus.events import types as t
from modelbus.events.codec import MAGIC
from tests.support.broker import (
    DedicatedKafka,
    RequestProducer,
    dedicated_kafka,
    lifecycle_events,
    request_codec,
    serve_model,
)
from tests.support.packages import build_credit_package, credit_rows
from tests.support.processes import start_worker, stop_workers
from tests.support.signing import SIGNING_KEY_ENV, TRUSTED_KEYS_ENV, ensure_test_keys

PARTITIONS = 4
FLOOD = 10_000
DEFAULT_RATE_PER_S = 1000.0
SAMPLE_EVERY_S = 10.0
# What a fault does, what ends it, and how long from its start it is held at least (s).
Fault = tuple[Callable[[], None], Callable[[], None], float]
RECOVERY_NOTE = (
    "Times are wall-clock: a request's at its produce() call, a result's its Kafka timestamp "
    "(CreateTime, set by the worker in the transaction that committed it; only results a "
    "read_committed reader receives count). held_s: from the fault's start (stop/kill issued) "
    "until start-broker is issued (for the worker, until its replacement is started: at "
    "once). outage_s: from the fault's start to its end (the broker answering again after "
    "start-broker, which includes the broker's own start-up; for the worker, its replacement "
    "process started). first_result_after_end_s: from the fault's end to the first committed "
    "result of a request sent after the fault ended: results flow again with no "
    "intervention. backlog_cleared_s: from the fault's end until the last request sent "
    "before the fault ended has its committed result (lag back to 0 for what the fault held "
    "up). longest_gap_s: the longest time between two consecutive committed results around "
    "the fault. lost: requests of the phase with no committed result at the end of the run; "
    "duplicated: requests with more than one committed result (exactly-once: both must be 0)."
)


@dataclass(frozen=True)
class Plan:
    """How long each part runs."""

    outage_s: float = 15.0
    before_s: float = 10.0
    after_s: float = 20.0
    flood_phase_s: float = 10.0
    flood_rounds: int = 3
    soak_minutes: float = 30.0


QUICK = Plan(
    outage_s=5.0, before_s=3.0, after_s=5.0, flood_phase_s=5.0, flood_rounds=2, soak_minutes=1.0
)


def default_rate() -> float:
    """Half of the 1-worker max sustained rate of results/inference.json, else 1000/s."""
    path = RESULTS / "inference.json"
    try:
        sustained = json.loads(path.read_text())["modelbus"]["1"]["max_sustained"]
        return float(sustained["predictions_per_s"]) / 2
    except (OSError, KeyError, ValueError):
        return DEFAULT_RATE_PER_S


class ResultLog:
    """A read_committed reader of the predictions topic from its start, on its own thread."""

    def __init__(self, bootstrap: str, model: str) -> None:
        self.consumer = read_only_consumer(
            bootstrap, purpose="bench-faults", extra={"fetch.wait.max.ms": 5}
        )
        topic = data_topic(model, "predictions")
        self.consumer.assign(
            [TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)]
        )
        self.counts: dict[bytes, int] = {}
        # When each request's first committed result was produced, and every result's time:
        # the result's Kafka timestamp (CreateTime, set by the worker inside the transaction
        # that committed it), so a reader slowed down by a loaded machine does not move them.
        self.produced_at: dict[bytes, float] = {}
        self.arrivals: list[float] = []
        self.running = True
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while self.running:
            messages = self.consumer.consume(1000, 0)
            if not messages:  # consume(n, timeout) waits to fill n: wait for one instead
                one = self.consumer.poll(0.05)
                messages = [one] if one is not None else []
            for message in messages:
                key = message.key()
                if message.error() is not None or key is None:
                    continue
                self.counts[key] = self.counts.get(key, 0) + 1
                produced_at = message.timestamp()[1] / 1000
                self.produced_at.setdefault(key, produced_at)
                self.arrivals.append(produced_at)

    def wait_for(self, keys: list[bytes], timeout_s: float) -> bool:
        """Until every key has a result, or the timeout."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(key in self.produced_at for key in keys):
                return True
            time.sleep(0.2)
        return False

    def close(self) -> None:
        """Stop reading."""
        self.running = False
        self.thread.join(10)
        self.consumer.close()


@dataclass
class Load:
    """Requests at ``rate_per_s`` from a thread, keyed ``<prefix><n>``; unknown-fingerprint
    messages interleaved when ``flood`` > 0 (that many, spread over ``flood_over_s``), or, with
    ``flood_valid``, as many extra valid requests (the control: the same added work)."""

    producer: RequestProducer
    model: str
    rate_per_s: float
    prefix: str
    flood: int = 0
    flood_over_s: float = 1.0
    flood_valid: bool = False
    sent_at: dict[bytes, float] = field(default_factory=dict)
    flooded: int = 0

    def __post_init__(self) -> None:
        self.rows, _ = credit_rows(2000, seed=3)
        self.running = True
        self.tag = uuid.uuid4().bytes[:4]
        self.thread = threading.Thread(target=self._send, daemon=True)
        self.thread.start()

    def _send(self) -> None:
        started = time.perf_counter()
        sent = 0
        unknown_per_request = self.flood / max(self.rate_per_s * self.flood_over_s, 1.0)
        owed = 0.0
        while self.running:
            due = int((time.perf_counter() - started) * self.rate_per_s)
            while sent < due:
                owed += unknown_per_request
                while owed >= 1.0 and self.flooded < self.flood:
                    owed -= 1.0
                    key = f"x{self.prefix}{self.flooded}"
                    if self.flood_valid:
                        self.producer.send(
                            self.model, key, self.rows[self.flooded % len(self.rows)]
                        )
                    else:
                        fingerprint = self.flooded.to_bytes(4, "big") + self.tag
                        self.producer.send_raw(self.model, key, MAGIC + fingerprint + b"\x00")
                    self.flooded += 1
                key = f"{self.prefix}{sent}"
                self.sent_at[key.encode()] = time.time()
                self.producer.send(self.model, key, self.rows[sent % len(self.rows)])
                sent += 1
            time.sleep(0.005)

    def stop(self) -> list[bytes]:
        """Stop sending; the keys sent."""
        self.running = False
        self.thread.join(30)
        self.producer.flush()
        return list(self.sent_at)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def delivery(results: ResultLog, keys: list[bytes]) -> dict[str, int]:
    """Sent, lost and duplicated among ``keys`` by the results read so far."""
    return {
        "requests_sent": len(keys),
        "lost": sum(1 for key in keys if key not in results.counts),
        "duplicated": sum(1 for key in keys if results.counts.get(key, 0) > 1),
    }


@dataclass
class Bench:
    """The broker, the worker and the traffic of one run."""

    kafka: DedicatedKafka
    model: str
    group: str
    rate_per_s: float
    producer: RequestProducer
    results: ResultLog
    worker: subprocess.Popen[bytes]
    phases: dict[str, tuple[list[bytes], dict[bytes, float]]] = field(default_factory=dict)

    def start_worker(self) -> subprocess.Popen[bytes]:
        """The worker of slot 0, exactly-once."""
        return start_worker(
            self.kafka.bootstrap,
            self.model,
            index=0,
            MODELBUS_INFERENCE_GROUP_ID=self.group,
            MODELBUS_INFERENCE_DELIVERY="exactly_once",
        )

    def load(self, name: str, **flood: Any) -> Load:
        """Start the paced load of phase ``name``."""
        return Load(self.producer, self.model, self.rate_per_s, f"{name}-", **flood)

    def finish(self, name: str, load: Load) -> list[bytes]:
        """Stop ``load``, wait for its results (up to 5 minutes), keep its keys for the end."""
        keys = load.stop()
        if not self.results.wait_for(keys, timeout_s=300):
            log(f"{name}: not every request had a result after 5 minutes")
        self.phases[name] = (keys, load.sent_at)
        return keys

    def fault(self, name: str, plan: Plan, faults: Fault) -> dict[str, Any]:
        """Load before, during and after one fault held ``hold_s``; its timings (the counts
        come at the end of the run)."""
        begin, end, hold_s = faults
        load = self.load(name)
        time.sleep(plan.before_s)
        log(f"{name}: fault begins")
        started = time.time()
        begin()
        time.sleep(max(hold_s - (time.time() - started), 0))
        held = time.time()
        end()
        ended = time.time()
        log(f"{name}: fault ends after {ended - started:.1f} s")
        time.sleep(plan.after_s)
        keys = self.finish(name, load)
        first_after = min(
            (self.results.produced_at[k] for k in keys if k in self.results.produced_at
             and load.sent_at[k] >= ended),
            default=None,
        )  # fmt: skip
        held_up = [self.results.produced_at.get(k, float("inf")) for k in keys
                   if load.sent_at[k] < ended]  # fmt: skip
        cleared = max(held_up, default=ended)
        if cleared == float("inf"):  # some never answered: counted as lost at the end
            cleared = time.time()
        window = sorted(
            a for a in self.results.arrivals if started - 1 <= a <= max(cleared, ended) + 1
        )
        gaps = [b - a for a, b in pairwise(window)]
        return {
            "held_s": round(held - started, 2),
            "outage_s": round(ended - started, 2),
            "first_result_after_end_s": None
            if first_after is None
            else round(max(first_after - ended, 0.0), 2),
            "backlog_cleared_s": round(max(cleared - ended, 0.0), 2),
            "longest_gap_s": round(max(gaps, default=0.0), 2),
        }

    def latencies_ms(self, keys: list[bytes], sent_at: dict[bytes, float]) -> list[float]:
        """produce() of the request -> its committed result produced, per request with one."""
        first = self.results.produced_at
        return [(first[k] - sent_at[k]) * 1000 for k in keys if k in first]


def broker_fault(bench: Bench, action: str, outage_s: float) -> Fault:
    """Stop or kill the broker; start it again after ``outage_s`` (kafka.sh waits until it
    answers)."""
    return (
        lambda: bench.kafka.broker(action),
        lambda: bench.kafka.broker("start-broker"),
        outage_s,
    )


def worker_fault(bench: Bench) -> Fault:
    """SIGKILL the worker; start its slot again at once, as the supervisor does."""

    def kill() -> None:
        bench.worker.send_signal(signal.SIGKILL)
        bench.worker.wait(30)

    def restart() -> None:
        bench.worker = bench.start_worker()

    return kill, restart, 0.0


FLOOD_ARMS = {"without_flood": "quiet", "with_flood": "flood", "with_as_many_valid": "extra"}
"""The flood benchmark's phases (result key -> phase name prefix): no extra messages; the
unknown fingerprints; as many extra valid requests instead (the control: the same added work)."""


def flood(bench: Bench, plan: Plan) -> dict[str, Any]:
    """Normal requests at one rate, in phases without extra messages, with unknown-fingerprint
    messages, and with as many extra valid requests.

    ``flood_rounds`` rounds of the three phases, in the order ABC CBA ABC ... so that a drift
    of the machine over the run falls on each alike (single phases one after the other
    differed by more than the flood's effect at half load). The FLOOD distinct fingerprints
    are shared out over the flood phases, and a control phase adds as many valid requests at
    the same pace: if the flood costs normal requests no more than the control does, handling
    an unknown fingerprint costs no more than serving a request. Each phase is answered before
    the next starts.
    """
    latencies: dict[str, list[float]] = {arm: [] for arm in FLOOD_ARMS}
    requests = dict.fromkeys(FLOOD_ARMS, 0)
    rounds: list[dict[str, float]] = []
    sent = 0
    for index in range(plan.flood_rounds):
        share = FLOOD // plan.flood_rounds + (index < FLOOD % plan.flood_rounds)
        extra = {"flood": share, "flood_over_s": plan.flood_phase_s * 0.9}
        p99s: dict[str, float] = {}
        for arm in list(FLOOD_ARMS)[:: 1 if index % 2 == 0 else -1]:
            name = f"{FLOOD_ARMS[arm]}{index}"
            if arm == "without_flood":
                load = bench.load(name)
            else:
                load = bench.load(name, **extra, flood_valid=arm == "with_as_many_valid")
            time.sleep(plan.flood_phase_s)
            keys = bench.finish(name, load)
            sent += load.flooded if arm == "with_flood" else 0
            phase_ms = bench.latencies_ms(keys, load.sent_at)
            latencies[arm] += phase_ms
            requests[arm] += len(keys)
            p99s[arm] = percentile(phase_ms, 99)
        rounds.append({f"{arm}_p99": round(value, 2) for arm, value in p99s.items()})
        rounds[-1]["p99_ratio"] = round(p99s["with_flood"] / p99s["without_flood"], 3)
        log(f"flood round {index + 1}/{plan.flood_rounds}: {rounds[-1]}")
    p99 = {arm: percentile(values, 99) for arm, values in latencies.items()}
    p99_ratio = p99["with_flood"] / p99["without_flood"]
    dlq = dlq_topic_for(data_topic(bench.model, "requests"))
    dead_letters = sum(1 for _ in read_topic(bench.kafka.bootstrap, dlq))
    return {
        "unknown_fingerprints_sent": sent,
        "dead_letters_on_requests_dlq": dead_letters,
        "normal_requests": requests,
        "latency_ms": {
            arm: {"p50": round(percentile(values, 50), 2), "p99": round(p99[arm], 2)}
            for arm, values in latencies.items()
        },
        "p99_ratio": round(p99_ratio, 3),
        "p99_ratio_target": 1.20,
        "target_met": p99_ratio <= 1.20,
        "p99_ratio_flood_to_as_many_valid": round(p99["with_flood"] / p99["with_as_many_valid"], 3),
        "rounds": rounds,
        "note": "latency: produce() of a normal request -> its committed result produced (the "
        "result's CreateTime). Phases without extra messages, with the flood and with as many "
        f"extra valid requests alternate (ABC CBA ...), each {plan.flood_phase_s:g} s at the "
        "same rate, the extra messages spread over the first 90% of the phase; p99 and the "
        "ratios are over all phases of a kind pooled, rounds gives each round's own",
    }


def lag(bench: Bench) -> int:
    """The worker group's lag on the requests topic: end offsets minus committed offsets."""
    topic = data_topic(bench.model, "requests")
    consumer = Consumer({**client_config(bench.kafka.bootstrap), "group.id": bench.group})
    try:
        committed = consumer.committed(
            [TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10
        )
        ends = watermarks(consumer, topic)  # after the commits, so lag is never negative
        return sum(ends[tp.partition][1] - max(tp.offset, 0) for tp in committed)
    finally:
        consumer.close()


def rss_kib(pid: int) -> int:
    """VmRSS of ``pid`` in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise LookupError(f"no VmRSS for {pid}")


def soak(bench: Bench, minutes: float) -> dict[str, Any]:
    """Load for ``minutes``; RSS and lag every 10 s; start/end = medians of first/last minute."""
    load = bench.load("soak")
    started = time.monotonic()
    samples: list[dict[str, Any]] = []
    while time.monotonic() - started < minutes * 60:
        time.sleep(SAMPLE_EVERY_S)
        samples.append(
            {
                "t_s": round(time.monotonic() - started, 1),
                "rss_kib": rss_kib(bench.worker.pid),
                "lag": lag(bench),
            }
        )
    bench.finish("soak", load)
    per_minute = max(int(60 / SAMPLE_EVERY_S), 1)

    def ends(name: str) -> dict[str, float]:
        first = statistics.median(s[name] for s in samples[:per_minute])
        last = statistics.median(s[name] for s in samples[-per_minute:])
        return {"start": first, "end": last, "growth": last - first}

    return {
        "minutes": minutes,
        "rate_per_s": bench.rate_per_s,
        "rss_kib": ends("rss_kib"),
        "consumer_lag": ends("lag"),
        "note": f"sampled every {SAMPLE_EVERY_S:.0f} s: VmRSS of the worker process, and the "
        "sum over the requests topic's partitions of end offset minus the group's committed "
        "offset (transaction markers count as offsets); start and end are the medians of the "
        "first and last minute of samples",
        "samples": samples,
    }


FAULTS = (
    "broker_graceful_stop",
    "broker_sigkill",
    "inference_worker_sigkill",
    "unknown_fingerprint_flood",
)


def run(
    plan: Plan, rate_per_s: float, workdir: Path, only: tuple[str, ...] = FAULTS
) -> dict[str, Any]:
    """Every fault in ``only`` (all by default), then the soak, on a broker of this run's own."""
    # Throwaway keys, never the user's (`make bench` names .run/keys): the broker is ours too.
    for name in (SIGNING_KEY_ENV, TRUSTED_KEYS_ENV):
        os.environ.pop(name, None)
    ensure_test_keys(workdir / "keys")
    package = workdir / "credit-package"
    sha256 = build_credit_package(package, seed=1)
    with dedicated_kafka(workdir / "kafka") as kafka:
        model = f"faults{uuid.uuid4().hex[:8]}"
        settings = KafkaSettings(bootstrap_servers=kafka.bootstrap, data_partitions=PARTITIONS)
        serve_model(settings, model, (package, sha256))
        codec = request_codec()
        producer = RequestProducer(settings, codec, idempotent=True)
        results = ResultLog(kafka.bootstrap, model)
        group = f"bench-faults-{model}"
        bench = Bench(kafka, model, group, rate_per_s, producer, results, None)  # type: ignore[arg-type]
        bench.worker = bench.start_worker()
        try:
            deadline = time.monotonic() + 180
            while not lifecycle_events(kafka.bootstrap, codec, model, (t.ModelLoaded,)):
                if time.monotonic() > deadline:
                    raise TimeoutError("the worker did not load the model in 180 s")
                time.sleep(1)
            warm = bench.load("warm")
            time.sleep(5)
            bench.finish("warm", warm)
            log(f"worker warm; {rate_per_s:.0f} requests/s from now on")
            runs: dict[str, Callable[[], dict[str, Any]]] = {
                "broker_graceful_stop": lambda: bench.fault(
                    "broker_graceful_stop", plan, broker_fault(bench, "stop-broker", plan.outage_s)
                ),
                "broker_sigkill": lambda: bench.fault(
                    "broker_sigkill", plan, broker_fault(bench, "kill-broker", plan.outage_s)
                ),
                "inference_worker_sigkill": lambda: bench.fault(
                    "inference_worker_sigkill", plan, worker_fault(bench)
                ),
                "unknown_fingerprint_flood": lambda: flood(bench, plan),
            }
            faults = {name: measure() for name, measure in runs.items() if name in only}
            soaked: dict[str, Any] = (
                soak(bench, plan.soak_minutes)
                if plan.soak_minutes > 0
                else {"skipped": "--soak-minutes 0"}
            )
            time.sleep(3)  # a duplicate would arrive after the last result
            for name, (keys, _sent) in bench.phases.items():
                counts = delivery(results, keys)
                if name == "soak":
                    soaked.update(counts)
                elif name in faults:
                    faults[name].update(counts)
                elif name.rstrip("0123456789") in FLOOD_ARMS.values():
                    phases = faults["unknown_fingerprint_flood"].setdefault(
                        f"{name.rstrip('0123456789')}_phases", {}
                    )
                    for count, value in counts.items():
                        phases[count] = phases.get(count, 0) + value
            every = [key for keys, _sent in bench.phases.values() for key in keys]
            return {
                "configuration": {
                    "worker_processes": 1,
                    "delivery": "exactly_once",
                    "request_partitions": PARTITIONS,
                    "rate_per_s": round(rate_per_s),
                    "rate_source": "half of results/inference.json's 1-worker max sustained "
                    "rate when present, else 1000/s; or --rate",
                    "broker": "a single-node Kafka of the run's own (infra/kafka/kafka.sh)",
                    "plan": plan.__dict__,
                    "worker_restart": "the SIGKILLed worker's slot (worker index 0: same "
                    "transactional id and static group membership) is started again at once, "
                    "which is what the service's supervisor (`run --workers N`) does",
                },
                "note": RECOVERY_NOTE,
                "faults": faults,
                "soak": soaked,
                "all_requests": delivery(results, every),
                "load_average_1_5_15": os.getloadavg(),
            }
        finally:
            stop_workers([bench.worker])
            results.close()


def main() -> None:
    """Parse arguments, run, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--soak-minutes", type=float, default=None)
    parser.add_argument("--rate", type=float, default=None, help="requests/s")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--only",
        action="append",
        choices=FAULTS,
        help="run only this fault (repeatable); the result goes to a temporary file, "
        "not results/faults.json",
    )
    args = parser.parse_args()
    plan = QUICK if args.quick else Plan()
    if args.soak_minutes is not None:
        plan = Plan(**{**plan.__dict__, "soak_minutes": args.soak_minutes})
    rate = args.rate or default_rate()
    with tempfile.TemporaryDirectory(prefix="modelbus-faults-") as workdir:
        result = run(plan, rate, Path(workdir), tuple(args.only or FAULTS))
    if args.quick or args.only:
        path = Path(tempfile.mkstemp(prefix="faults-quick-", suffix=".json")[1])
        path.write_text(json.dumps(result, indent=2) + "\n")
    else:
        path = write_result("faults", result)
    log(f"wrote {path}")
    print(json.dumps({k: v for k, v in result.items() if k != "soak"}, indent=2))


if __name__ == "__main__":
    main()

"""A three-broker cluster: one broker killed under steady load, and what replication costs.

-> results/cluster.json. The script starts its own 3-node KRaft cluster (infra/kafka/kafka.sh,
KAFKA_BROKERS=3) and stops it at the end, so it needs no broker of the caller's.

1. Replication cost: one inference worker drains the same backlog of requests from a model
   whose data topics have 3 copies (min.insync.replicas 2, acks=all) and from one whose data
   topics have 1 copy, in the same run; results are counted, not offsets.
2. Broker loss: steady paced load on one worker; the leader of the lifecycle partition (and of
   some data partitions) is SIGKILLed, then restarted; reported: the longest gap between two
   committed results around the kill (results flowing again), requests lost and duplicated.

``python -m benchmarks.cluster [--backlog N] [--rate R] [--seconds S]``
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.common import write_result
from modelbus.bus import LIFECYCLE_TOPIC, data_topic, ensure_topics, topic_specs
from modelbus.bus.security import client_config
from modelbus.bus.topics import describe_topics
from modelbus.config import KafkaSettings
from modelbus.events import types as t
from tests.support.broker import RequestProducer, TopicReader, publish_lifecycle, request_codec
from tests.support.events import registered, shifted
from tests.support.packages import build_credit_package, credit_rows
from tests.support.processes import start_worker, stop_workers

KAFKA = str(Path(__file__).resolve().parents[1] / "infra" / "kafka" / "kafka.sh")
PARTITIONS = 4


def log(message: str) -> None:
    print(f"[cluster] {message}", flush=True)


class Cluster:
    """Three brokers on loopback, started here and stopped at the end."""

    def __init__(self, run_dir: Path, port: int = 29_100) -> None:
        self.env = {
            **os.environ,
            "KAFKA_PORT": str(port),
            "KAFKA_BROKERS": "3",
            "MODELBUS_RUN_DIR": str(run_dir),
        }
        subprocess.run([KAFKA, "up"], env=self.env, check=True)
        self.bootstrap = subprocess.run(
            [KAFKA, "bootstrap"], env=self.env, check=True, capture_output=True, text=True
        ).stdout.strip()

    def broker(self, action: str, node: int) -> None:
        subprocess.run([KAFKA, action, str(node)], env=self.env, check=True)

    def down(self) -> None:
        subprocess.run([KAFKA, "down"], env=self.env, check=False)


def _serve(settings: KafkaSettings, model: str, package: tuple[Path, str], copies: int) -> None:
    specs = topic_specs([model], data_partitions=PARTITIONS, retention_ms=3_600_000)
    ensure_topics(settings.bootstrap_servers, specs, replication_factor=copies)
    publish_lifecycle(
        settings,
        request_codec(),
        registered(model, 1, *package),
        shifted(model, [("champion", 1, 100.0)]),
    )


def drain_rate(
    settings: KafkaSettings, package: tuple[Path, str], *, copies: int, backlog: int
) -> dict[str, Any]:
    """Results/s one worker commits draining ``backlog`` requests from topics with ``copies``."""
    model = f"rf{copies}x{time.monotonic_ns() % 10**8}"
    _serve(settings, model, package, copies)
    codec = request_codec()
    producer = RequestProducer(settings, codec)
    rows, _ = credit_rows(backlog, seed=copies)
    for number, row in enumerate(rows):
        producer.send(model, f"r{number}", row)
    producer.flush()
    reader = TopicReader(settings.bootstrap_servers, data_topic(model, "predictions"), codec)
    worker = start_worker(settings.bootstrap_servers, model)
    try:
        reader.read_until(lambda r: len(r) >= 1, timeout_s=120, settle_s=0)
        started, first = time.monotonic(), len(reader.records)
        results = reader.read_until(lambda r: len(r) >= backlog, timeout_s=600, settle_s=0)
        elapsed = time.monotonic() - started
    finally:
        stop_workers([worker])
        reader.close()
    topics = describe_topics(settings.bootstrap_servers, [data_topic(model, "requests")])
    counted = len({r.request_id for r in results if isinstance(r, t.PredictionResult)})
    return {
        "data_topic_replicas_and_min_isr": list(topics[data_topic(model, "requests")][1:]),
        "results": counted,
        "results_per_s": round((counted - first) / elapsed, 1),
    }


def broker_loss(
    cluster: Cluster, settings: KafkaSettings, package: tuple[Path, str], *, rate: int, seconds: int
) -> dict[str, Any]:
    """Steady load; the lifecycle leader is killed a third of the way in, restarted at two."""
    model = f"loss{time.monotonic_ns() % 10**8}"
    _serve(settings, model, package, 3)
    codec = request_codec()
    producer = RequestProducer(settings, codec)
    total = rate * seconds
    rows, _ = credit_rows(total, seed=5)
    reader = TopicReader(settings.bootstrap_servers, data_topic(model, "predictions"), codec)
    worker = start_worker(settings.bootstrap_servers, model)
    from confluent_kafka.admin import AdminClient

    metadata = AdminClient(client_config(cluster.bootstrap)).list_topics(timeout=10)
    victim = metadata.topics[LIFECYCLE_TOPIC].partitions[0].leader
    killed_at = restarted_at = 0.0
    try:
        producer.send(model, "warm-up", rows[0])
        producer.flush()
        reader.read_until(lambda r: len(r) >= 1, timeout_s=120, settle_s=0)
        started = time.time()
        for number in range(total):
            due = started + number / rate
            if (pause := due - time.time()) > 0:
                time.sleep(pause)
            producer.send(model, f"r{number}", rows[number])
            if number == total // 3:
                producer.flush()
                killed_at = time.time()
                cluster.broker("kill-broker", victim)
                log(f"broker {victim} killed")
            if number == 2 * total // 3:
                cluster.broker("start-broker", victim)
                restarted_at = time.time()
                log(f"broker {victim} restarted")
        producer.flush()
        results = reader.read_until(lambda r: len(r) >= total + 1, timeout_s=300, settle_s=3)
        alive = worker.poll() is None
    finally:
        stop_workers([worker])
        reader.close()
    answers = [
        r for r in results if isinstance(r, t.PredictionResult) and r.request_id != "warm-up"
    ]
    counts = Counter(r.request_id for r in answers)
    produced = sorted(r.meta.occurred_at.timestamp() for r in answers)
    around = [x for x in produced if killed_at - 5 <= x <= restarted_at + 5]
    gaps = [b - a for a, b in itertools.pairwise(around)]
    return {
        "offered_rate_per_s": rate,
        "seconds": seconds,
        "killed_broker": victim,
        "broker_down_s": round(restarted_at - killed_at, 1),
        "worker_survived": alive,
        "longest_gap_between_results_s": round(max(gaps, default=0.0), 3),
        "requests": total,
        "lost": total - len(counts),
        "duplicated": sum(n - 1 for n in counts.values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backlog", type=int, default=30_000)
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--seconds", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="modelbus-cluster-") as workdir:
        package_dir = Path(workdir) / "package"
        package = (package_dir, build_credit_package(package_dir, seed=1))
        cluster = Cluster(Path(workdir) / "kafka")
        try:
            settings = KafkaSettings(bootstrap_servers=cluster.bootstrap)
            log("drain with 3 copies, then with 1 copy")
            three = drain_rate(settings, package, copies=3, backlog=args.backlog)
            one = drain_rate(settings, package, copies=1, backlog=args.backlog)
            log("steady load, one broker killed and restarted")
            loss = broker_loss(cluster, settings, package, rate=args.rate, seconds=args.seconds)
        finally:
            cluster.down()
    result = {
        "cluster": "3 KRaft nodes (broker+controller) on loopback, 512 MB heap each",
        "worker": "1 inference worker, exactly_once, default batch size",
        "replication_cost": {
            "rf3_min_isr2": three,
            "rf1": one,
            "rf3_over_rf1_throughput": round(three["results_per_s"] / one["results_per_s"], 3),
        },
        "broker_loss": loss,
    }
    path = write_result("cluster", result)
    log(f"wrote {path}")


if __name__ == "__main__":
    main()

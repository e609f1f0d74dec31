"""A three-broker KRaft cluster from the same jars: replicated topics, and a broker lost under load.

The module starts its own cluster (infra/kafka/kafka.sh with KAFKA_BROKERS=3) on loopback and
stops it at the end; the session's single broker is not involved.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelbus.bus import LIFECYCLE_TOPIC, data_topic, ensure_topics, topic_specs
from modelbus.bus.topics import DurabilityError, describe_topics
from modelbus.config import KafkaSettings
from modelbus.events import new_meta
from modelbus.events import types as t
from tests.support.broker import (
    DedicatedKafka,
    RequestProducer,
    TopicReader,
    dedicated_kafka,
    lifecycle_events,
    publish_lifecycle,
    request_codec,
)
from tests.support.events import registered, shifted
from tests.support.packages import credit_rows
from tests.support.processes import start_worker, stop_workers
from tests.support.results import results_by_request

pytestmark = [pytest.mark.integration, pytest.mark.cluster]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DedicatedKafka]:
    with dedicated_kafka(tmp_path_factory.mktemp("cluster"), brokers=3) as nodes:
        yield nodes


def test_topics_on_three_brokers_get_three_copies_and_two_in_sync(
    cluster: DedicatedKafka, unique: str
) -> None:
    model = f"credit{unique}"
    specs = topic_specs([model], data_partitions=4, retention_ms=3_600_000)
    ensure_topics(cluster.bootstrap, specs)
    described = describe_topics(cluster.bootstrap, [spec.name for spec in specs])
    assert described[LIFECYCLE_TOPIC] == (1, 3, 2)
    assert described[data_topic(model, "requests")] == (4, 3, 2)
    assert set(described) == {spec.name for spec in specs}


def test_a_replication_factor_larger_than_the_cluster_is_refused(
    cluster: DedicatedKafka, unique: str
) -> None:
    specs = topic_specs([f"big{unique}"], data_partitions=1, retention_ms=3_600_000)
    with pytest.raises(DurabilityError, match="larger than the cluster \\(3 broker"):
        ensure_topics(cluster.bootstrap, specs, replication_factor=4)


@pytest.mark.timeout(600)  # three brokers start in its setup on a loaded 2-core machine
def test_exactly_once_inference_rides_out_a_broker_killed_under_load(
    cluster: DedicatedKafka, unique: str, package_v1: tuple[Path, str]
) -> None:
    model = f"credit{unique}"
    settings = KafkaSettings(bootstrap_servers=cluster.bootstrap, data_partitions=4)
    ensure_topics(
        cluster.bootstrap, topic_specs([model], data_partitions=4, retention_ms=3_600_000)
    )
    codec = request_codec()
    publish_lifecycle(
        settings, codec, registered(model, 1, *package_v1), shifted(model, [("champion", 1, 100)])
    )
    producer = RequestProducer(settings, codec, idempotent=True)
    rows, _ = credit_rows(6_000, seed=21)
    worker = start_worker(cluster.bootstrap, model)
    reader = TopicReader(cluster.bootstrap, data_topic(model, "predictions"), codec)
    asked = [
        t.TrainingRequested(meta=new_meta("cluster-test"), model=model, reason=f"r{n}",
                            requested_by="cluster-test")
        for n in range(30)
    ]  # fmt: skip
    try:
        for number in range(500):
            producer.send(model, f"r{number}", rows[number])
        producer.flush()
        reader.read_until(lambda r: len(r) >= 500, timeout_s=90, settle_s=0)
        # The hardest broker to lose: the worker's own transaction coordinator.
        victim = cluster.transaction_coordinator(f"modelbus-inference-{model}-0")
        for number in range(500, 6_000):
            producer.send(model, f"r{number}", rows[number])
            if number % 100 == 0:
                producer.flush()
                time.sleep(0.05)
            if number == 2_000:
                cluster.broker("kill-broker", victim)
                publish_lifecycle(settings, codec, *asked[:15])
            if number == 4_000:
                cluster.broker("start-broker", victim)
                publish_lifecycle(settings, codec, *asked[15:])
        producer.flush()
        results = reader.read_until(lambda r: len(r) >= 6_000, timeout_s=240, settle_s=0)
        # Read to the end once more: a duplicate would sit after the 6,000th result.
        results = reader.read_until(lambda r: False, timeout_s=3, settle_s=0)
        assert worker.poll() is None, "the inference worker died with the broker"
    finally:
        stop_workers([worker])
        reader.close()
    counts = results_by_request(results)
    missing = {f"r{n}" for n in range(6_000)} - set(counts)
    duplicated = sorted(rid for rid, n in counts.items() if n > 1)
    assert not missing, f"{len(missing)} lost, e.g. {sorted(missing)[:5]}"
    assert not duplicated, f"{len(duplicated)} duplicated, e.g. {duplicated[:5]}"
    logged = lifecycle_events(cluster.bootstrap, codec, model, (t.TrainingRequested,))
    assert [e.meta.event_id for e in logged] == [e.meta.event_id for e in asked]
    assert cluster.leader_of(LIFECYCLE_TOPIC) in {1, 2, 3}


def test_the_deployer_keeps_deciding_through_a_leader_change_of_the_lifecycle(
    cluster: DedicatedKafka, unique: str, package_v1: tuple[Path, str]
) -> None:
    """The lifecycle partition's leader dies; the deployer (a real process) still answers."""
    from tests.support.waiting import NotYet, eventually

    model = f"credit{unique}"
    settings = KafkaSettings(bootstrap_servers=cluster.bootstrap, data_partitions=4)
    ensure_topics(
        cluster.bootstrap, topic_specs([model], data_partitions=4, retention_ms=3_600_000)
    )
    codec = request_codec()
    deployer = subprocess.Popen(
        [sys.executable, "-m", "modelbus_deployer", "run"],
        env={**os.environ, "MODELBUS_BOOTSTRAP_SERVERS": cluster.bootstrap,
             "MODELBUS_DEPLOYER_GROUP_ID": f"cluster-deployer-{unique}",
             "MODELBUS_DEPLOYER_MODELS_PATTERN": model},
    )  # fmt: skip
    victim = cluster.leader_of(LIFECYCLE_TOPIC)
    try:
        publish_lifecycle(settings, codec, registered(model, 1, *package_v1))

        def promoted(version: int) -> t.ModelPromoted:
            found = lifecycle_events(cluster.bootstrap, codec, model, (t.ModelPromoted,))
            if not any(e.version == version for e in found):
                raise NotYet(f"no ModelPromoted for v{version}")
            return next(e for e in found if e.version == version)

        eventually(lambda: promoted(1), timeout_s=60)
        cluster.broker("kill-broker", victim)
        publish_lifecycle(settings, codec, registered(model, 2, *package_v1))
        ask = t.PromotionRequested(
            meta=new_meta("operator@test"), model=model, version=2, requested_by="test",
            reason="through a leader change",
        )  # fmt: skip
        publish_lifecycle(settings, codec, ask)
        two = eventually(lambda: promoted(2), timeout_s=90)
        assert cluster.leader_of(LIFECYCLE_TOPIC) != victim
        assert two.meta.causation_id == ask.meta.event_id
        assert deployer.poll() is None
    finally:
        cluster.broker("start-broker", victim)
        deployer.terminate()
        deployer.wait(30)

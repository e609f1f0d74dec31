"""Decisions are written in Kafka transactions under one transactional id per deployer group.

A deployer that took over fences the one before it: the deposed instance's open transaction
is aborted by the broker, its commit fails, it drops its state and re-reads the log, and
nothing it decided after being deposed is ever visible to a read-committed reader.
"""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaException

from modelbus.bus import LIFECYCLE_TOPIC
from modelbus.bus.reading import read_events
from modelbus.events import new_meta
from modelbus.events import types as t
from modelbus_deployer.bootstrap import bootstrap
from modelbus_deployer.config import Settings
from tests.support.broker import request_codec

pytestmark = pytest.mark.integration


def shift(model: str, version: int) -> t.TrafficShifted:
    routes = [t.Route(variant="champion", version=version, weight_pct=100.0)]
    meta = new_meta("deployer@test")
    return t.TrafficShifted(meta=meta, model=model, routes=routes, reason=f"to v{version}")


def test_a_deposed_deployer_is_fenced_and_its_decision_never_reaches_the_log(
    kafka_settings, unique: str
) -> None:  # type: ignore[no-untyped-def]
    model = f"fenced{unique}"
    settings = Settings(kafka=kafka_settings, group_id=f"test-fencing-{unique}")
    deposed, successor = bootstrap(settings), bootstrap(settings)
    deposed.deployer = deposed.new_deployer()
    deposed.publisher = deposed.new_publisher()
    deposed.publisher.producer.init_transactions(30)
    successor.publisher = successor.new_publisher()
    successor.publisher.producer.init_transactions(30)  # same transactional id: fences

    deposed._publish([shift(model, 1)])  # refused by the broker: the loop drops its state
    with pytest.raises(KafkaException) as raised:
        deposed.publisher.producer.begin_transaction()
    assert raised.value.args[0].fatal()
    assert "fenced" in raised.value.args[0].str().lower()
    successor.deployer = successor.new_deployer()
    successor._publish([shift(model, 3)])

    assert deposed.deployer is None  # dropped its view, will rebuild from the log
    assert (deposed.decisions, successor.decisions) == (0, 1)
    written = [
        e
        for e in read_events(
            kafka_settings.bootstrap_servers, LIFECYCLE_TOPIC, request_codec(), key=model
        )
        if isinstance(e, t.TrafficShifted) and e.model == model
    ]
    assert [e.routes[0].version for e in written] == [3]  # never 1
    deposed.lifecycle.close()
    successor.lifecycle.close()

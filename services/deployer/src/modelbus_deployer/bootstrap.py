"""Wiring only: consumers, the transactional publisher, the domain; nothing is started here."""

from __future__ import annotations

import re

from confluent_kafka import Consumer

from modelbus.bus import Publisher, kafka_schema_store
from modelbus.bus.reading import read_only_consumer
from modelbus.bus.security import client_config
from modelbus.events import build_codec
from modelbus.events.meta import producer_id
from modelbus.trust import load_signer, load_trusted
from modelbus_deployer.config import Settings
from modelbus_deployer.domain import Deployer
from modelbus_deployer.handlers import SIGNERS
from modelbus_deployer.stream import DeployerLoop


def bootstrap(settings: Settings) -> DeployerLoop:
    """The deployer's loop, wired to the broker in ``settings``."""
    kafka = settings.kafka
    codec = build_codec(kafka_schema_store(kafka.bootstrap_servers))
    producer = producer_id("deployer")
    signer = load_signer("deployer")  # refuse to start without keys: it signs TrafficShifted
    trusted = load_trusted(required=SIGNERS)  # and acts only on correctly signed inputs
    lifecycle = Consumer(
        {
            **client_config(kafka.bootstrap_servers),
            "group.id": settings.group_id,
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "session.timeout.ms": settings.session_timeout_ms,
            "heartbeat.interval.ms": max(settings.session_timeout_ms // 6, 500),
            "auto.offset.reset": "earliest",
        }
    )
    health = read_only_consumer(kafka.bootstrap_servers, purpose="deployer-health")

    def new_deployer() -> Deployer:
        return Deployer(producer=producer, policy=settings.policy())

    def new_publisher() -> Publisher:
        # One transactional id for every deployer: the one taking over fences the one before.
        return Publisher(
            kafka,
            codec,
            client_id=producer,
            extra_config={"transactional.id": f"{settings.group_id}-decisions"},
            signer=signer,
        )

    pattern = re.compile(settings.models_pattern)
    return DeployerLoop(
        lifecycle,
        health,
        codec,
        new_deployer,
        new_publisher,
        tick_s=settings.tick_s,
        trusted=trusted,
        producer=producer,
        watches=lambda model: pattern.fullmatch(model) is not None,
    )

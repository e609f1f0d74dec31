"""Round-trip an example of every event type through the real broker."""

from __future__ import annotations

import dataclasses
import time
import uuid
from typing import Any

from rich.console import Console
from rich.table import Table

from modelbus.bus import Publisher, ensure_topics
from modelbus.bus.reading import read_topic
from modelbus.bus.schema_topic import kafka_schema_store
from modelbus.bus.topics import TopicSpec
from modelbus.config import KafkaSettings
from modelbus.events import build_codec, example_event, new_meta
from modelbus.events.meta import DATA_PLANE_EVENTS, LIFECYCLE_EVENTS, producer_id

SELFCHECK_TOPIC = "modelbus.selfcheck"
"""A scratch topic, so examples never enter the audit log or a model's streams."""


def run_selfcheck(settings: KafkaSettings, console: Console) -> bool:
    """Produce one example of each event, read them back, and compare; True when all match."""
    ensure_topics(
        settings.bootstrap_servers,
        [TopicSpec(SELFCHECK_TOPIC, 1, {"retention.ms": str(3600 * 1000)})],
    )
    # A fresh store: decoding must work from the schemas topic alone, like a new reader's would.
    writer_codec = build_codec()
    reader_codec = build_codec(kafka_schema_store(settings.bootstrap_servers))
    publisher = Publisher(settings, writer_codec, client_id="modelbus-selfcheck")
    run_id = f"selfcheck-{uuid.uuid4()}"
    sent: dict[str, Any] = {}
    for cls in LIFECYCLE_EVENTS + DATA_PLANE_EVENTS:
        event = dataclasses.replace(
            example_event(cls),
            meta=new_meta(producer_id("selfcheck"), correlation_id=run_id),
        )
        sent[event.meta.event_id] = event
        publisher.publish(event, topic=SELFCHECK_TOPIC, key=cls.__name__)
    publisher.flush()

    table = Table(title=f"every event through {settings.bootstrap_servers}/{SELFCHECK_TOPIC}")
    for column in ("event", "bytes", "fingerprint", "offset", "round trip"):
        table.add_column(column)
    received = 0
    deadline = time.monotonic() + 30
    for envelope in read_topic(settings.bootstrap_servers, SELFCHECK_TOPIC):
        if time.monotonic() > deadline:
            break
        value = envelope.value or b""
        event = reader_codec.decode(value, where=envelope.where)
        original = sent.get(getattr(getattr(event, "meta", None), "event_id", ""))
        if original is None:
            continue
        received += 1
        same = event == original
        table.add_row(
            type(event).__name__,
            str(len(value)),
            value[2:10].hex(),
            str(envelope.offset),
            "[green]identical[/green]" if same else "[red]DIFFERENT[/red]",
        )
        if not same:
            sent[event.meta.event_id] = None
    console.print(table)
    ok = received == len(sent) and all(event is not None for event in sent.values())
    verdict = "[green]all identical[/green]" if ok else "[red]mismatch[/red]"
    console.print(f"{received}/{len(sent)} events came back: {verdict}")
    return ok

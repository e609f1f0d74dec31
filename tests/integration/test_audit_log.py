"""`modelbus audit` on the real log: a whole log passes; one removed, altered or tampered is named.

The test writes one model's history through the Publisher (which chains lifecycle messages),
then audits copies of it — as read back from the broker — with one message removed, one
altered, or one package file changed. The CLI runs as a process against a copy topic too.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Producer

from modelbus.audit import audit, tampered_artifacts
from modelbus.bus import LIFECYCLE_TOPIC, Publisher, ensure_topics
from modelbus.bus.chain import Link
from modelbus.bus.reading import read_topic
from modelbus.bus.security import client_config
from modelbus.bus.topics import TopicSpec
from modelbus.events import build_codec, new_meta
from modelbus.events import types as t
from tests.support.events import registered
from tests.support.signing import role_signers

pytestmark = pytest.mark.integration


def _history(kafka_settings, model: str, package: tuple[Path, str]) -> list:  # type: ignore[no-untyped-def]
    publisher = Publisher(
        kafka_settings, build_codec(), client_id=f"audit-test-{model}", signer=role_signers()
    )
    ask = t.TrainingRequested(
        meta=new_meta("test"), model=model, reason="audit", requested_by="test"
    )
    one = dataclasses.replace(
        registered(model, 1, *package), meta=new_meta("test-registry", cause=ask)
    )
    promoted = t.ModelPromoted(
        meta=new_meta("test-deployer", cause=one), model=model, version=1, reason="first"
    )
    for event in (ask, one, promoted):
        publisher.publish(event)
    publisher.flush()
    return [ask, one, promoted]


def _links(bootstrap: str, model: str, topic: str = LIFECYCLE_TOPIC) -> list[Link]:
    return [
        Link(e.where, e.key or b"", e.value or b"", e.headers)
        for e in read_topic(bootstrap, topic)
        if e.key == model.encode()
    ]


def test_a_whole_log_passes_and_a_removed_or_altered_event_is_named(
    kafka_settings, unique: str, package_v1: tuple[Path, str]
) -> None:
    model = f"audit{unique}"
    events = _history(kafka_settings, model, package_v1)
    links = _links(kafka_settings.bootstrap_servers, model)
    assert len(links) == 3
    assert audit(events, links=links).problems == []

    removed = audit(events[:1] + events[2:], links=[links[0], links[2]]).problems
    assert len(removed) == 2
    assert removed[0].startswith("removed: event #2 of writer audit-test-")
    assert f"between {links[0].where} and {links[2].where}" in removed[0]
    assert "names cause" in removed[1]  # the promotion's cause is gone too

    altered_value = links[1].value[:-1] + bytes([links[1].value[-1] ^ 0x01])
    altered = [
        links[0],
        Link(links[1].where, links[1].key, altered_value, links[1].headers),
        links[2],
    ]
    (problem,) = audit(events, links=altered).problems
    assert problem.startswith(f"altered: {links[1].where} (event #2 of writer audit-test-")


def test_a_package_changed_after_registration_is_named(
    kafka_settings, unique: str, package_v1: tuple[Path, str], tmp_path: Path
) -> None:
    copy = tmp_path / "v1"
    shutil.copytree(package_v1[0], copy)
    events = _history(kafka_settings, f"audit{unique}", (copy, package_v1[1]))
    assert tampered_artifacts(events) == []
    weights = copy / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x00")
    (problem,) = tampered_artifacts(events)
    assert problem.startswith(f"artifact of audit{unique} v1 ")
    assert "weights.safetensors" in problem


def test_the_audit_command_exits_1_on_a_copy_of_the_log_with_an_event_removed(
    kafka_settings, unique: str, package_v1: tuple[Path, str]
) -> None:
    model = f"audit{unique}"
    _history(kafka_settings, model, package_v1)
    links = _links(kafka_settings.bootstrap_servers, model)
    copy_topic = f"modelbus.test.lifecycle-copy-{uuid.uuid4().hex[:8]}"
    ensure_topics(kafka_settings.bootstrap_servers, [TopicSpec(copy_topic, 1)])
    producer = Producer(client_config(kafka_settings.bootstrap_servers))
    for link in (links[0], links[2]):
        producer.produce(copy_topic, link.value, link.key, headers=list(link.headers.items()))
    assert producer.flush(30) == 0
    env = {**os.environ, "MODELBUS_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers}
    command = [sys.executable, "-m", "modelbus.cli", "audit", "--model", model]
    whole = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert whole.returncode == 0, whole.stdout + whole.stderr
    assert "log consistent and whole" in whole.stdout
    cut = subprocess.run(
        [*command, "--topic", copy_topic], env=env, capture_output=True, text=True, timeout=120
    )
    assert cut.returncode == 1
    assert "removed: event #2 of writer" in cut.stdout.replace("\n", " ")


def test_the_audit_command_names_a_decision_signed_by_the_wrong_role(
    kafka_settings, unique: str, package_v1: tuple[Path, str]
) -> None:
    model = f"audit{unique}"
    _history(kafka_settings, model, package_v1)
    forger = Publisher(kafka_settings, build_codec(), client_id=f"audit-forger-{model}")
    forger.publish(registered(model, 2, *package_v1))
    forger.flush()
    env = {**os.environ, "MODELBUS_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers}
    command = [sys.executable, "-m", "modelbus.cli", "audit", "--model", model, "--json"]
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, run.stdout + run.stderr
    problems = [p for p in json.loads(run.stdout)["problems"] if "UnsignedEvent" in p]
    assert len(problems) == 1
    assert problems[0].endswith(
        "UnsignedEvent: ModelRegistered carries no signature; it must come from registry"
    )

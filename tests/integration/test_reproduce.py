"""`modelbus audit prediction(s)` and `modelbus replay` on answers a real inference worker gave."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from modelbus.bus import Publisher
from modelbus.bus.topics import data_topic
from modelbus.events import new_meta
from modelbus.events import types as t
from modelbus.events.meta import now_utc
from tests.support.broker import (
    RequestProducer,
    TopicReader,
    create_model_topics,
    publish_lifecycle,
    request_codec,
)
from tests.support.events import registered, shifted
from tests.support.packages import credit_rows
from tests.support.processes import start_worker, stop_workers

pytestmark = pytest.mark.integration
N = 400


@pytest.fixture(scope="module")
def answered(kafka_settings, package_v1: tuple[Path, str]):  # type: ignore[no-untyped-def]
    """A model of its own, N requests answered by v1 and labelled."""
    import uuid

    model = f"credit{uuid.uuid4().hex[:8]}"
    create_model_topics(kafka_settings, model)
    codec = request_codec()
    publish_lifecycle(
        kafka_settings,
        codec,
        registered(model, 1, *package_v1),
        shifted(model, [("champion", 1, 100)]),
    )
    rows, labels = credit_rows(N, seed=77)
    producer = RequestProducer(kafka_settings, codec)
    worker = start_worker(kafka_settings.bootstrap_servers, model)
    reader = TopicReader(kafka_settings.bootstrap_servers, data_topic(model, "predictions"), codec)
    try:
        for number, row in enumerate(rows):
            producer.send(model, f"r{number}", row)
        producer.flush()
        reader.read_until(lambda r: len(r) >= N, timeout_s=120, settle_s=0)
    finally:
        stop_workers([worker])
        reader.close()
    publisher = Publisher(kafka_settings, codec, client_id="reproduce-test")
    for number, label in enumerate(labels):
        publisher.publish(
            t.Feedback(meta=new_meta("test"), request_id=f"r{number}", model=model, label=label,
                       observed_at=now_utc())
        )  # fmt: skip
    publisher.flush()
    return model, labels


def _cli(kafka_settings, *args: str) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    env = {**os.environ, "MODELBUS_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
           "COLUMNS": "200"}  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "modelbus.cli", *args],
        env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip


def test_every_sampled_answer_is_reproduced_bit_for_bit(kafka_settings, answered) -> None:  # type: ignore[no-untyped-def]
    model, _ = answered
    run = _cli(kafka_settings, "audit", "predictions", "--model", model, "--sample", "300")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "300/300 identical" in run.stdout


def test_one_answer_is_reproduced_with_its_lineage(kafka_settings, answered) -> None:  # type: ignore[no-untyped-def]
    model, _ = answered
    run = _cli(kafka_settings, "audit", "prediction", "r17", "--model", model)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1/1 identical" in run.stdout
    assert "lineage: run run-1" in run.stdout


def test_an_unknown_request_is_refused(kafka_settings, answered) -> None:  # type: ignore[no-untyped-def]
    model, _ = answered
    run = _cli(kafka_settings, "audit", "prediction", "no-such-request", "--model", model)
    assert run.returncode == 1
    assert "no request ['no-such-request']" in run.stdout


def test_replay_compares_a_version_with_the_answers_given(
    kafka_settings, answered, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    model, labels = answered
    out = tmp_path / "replay.jsonl"
    run = _cli(kafka_settings, "replay", "1", "--model", model, "--out", str(out))
    assert run.returncode == 0, run.stdout + run.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == N
    assert all(line["answered_label"] == line["v1_label"] for line in lines)
    assert {line["request_id"]: line["true_label"] for line in lines} == {
        f"r{n}": label for n, label in enumerate(labels)
    }
    assert "100.0%" in run.stdout  # v1 agrees with itself

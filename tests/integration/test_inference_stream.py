"""The inference stream on the real broker: exactly once, SIGKILL recovery, dead letters."""

from __future__ import annotations

import math
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from confluent_kafka.admin import AdminClient
from tenacity import retry, stop_after_delay, wait_fixed

from modelbus.bus.reading import read_events
from modelbus.bus.security import client_config
from modelbus.bus.topics import data_topic
from modelbus.events import new_meta
from modelbus.events import types as t
from modelbus.events.meta import now_utc
from modelbus.packaging import load_package
from tests.support.broker import (
    RequestProducer,
    TopicReader,
    encode_request,
    lifecycle_events,
    request_codec,
    serve_model,
)
from tests.support.packages import credit_rows
from tests.support.processes import start_worker, stop_workers
from tests.support.results import results_by_request
from tests.support.waiting import NotYet, eventually

pytestmark = pytest.mark.integration


# Measured: 10,000 results arrived 1.3 s after the first send (2 cores, load average 6.6);
# normal is taken as 2 s on a busy CI machine and the allowance is 10x that, so a 10x
# slowdown of the stream fails here (the old allowance was a flat 120 s).
TEN_K_NORMAL_S = 2.0
TEN_K_ALLOWANCE_S = 10 * TEN_K_NORMAL_S


def test_ten_thousand_requests_give_exactly_ten_thousand_results_scored_as_the_package_scores(
    kafka_settings, unique: str, package_v1: tuple[Path, str]
) -> None:
    model = f"credit{unique}"
    serve_model(kafka_settings, model, package_v1)
    codec = request_codec()
    producer = RequestProducer(kafka_settings, codec)
    rows, _ = credit_rows(10_000)
    worker = start_worker(kafka_settings.bootstrap_servers, model)
    reader = TopicReader(kafka_settings.bootstrap_servers, data_topic(model, "predictions"), codec)
    try:
        # The clock starts once the worker serves, so the allowance measures the stream only.
        lifecycle = kafka_settings.bootstrap_servers, codec, model, (t.ModelLoaded,)
        eventually(lambda: lifecycle_events(*lifecycle) or _not_yet("no ModelLoaded"), 120)
        started = time.monotonic()
        for number, row in enumerate(rows):
            producer.send(model, f"r{number}", row)
        producer.flush()
        results = reader.read_until(
            lambda r: len(r) >= 10_000, timeout_s=TEN_K_ALLOWANCE_S, settle_s=0
        )
        took_s = time.monotonic() - started
    finally:
        stop_workers([worker])
        reader.close()
    assert len(results) == 10_000, f"{len(results)} results in {TEN_K_ALLOWANCE_S} s"
    everything = list(
        read_events(kafka_settings.bootstrap_servers, data_topic(model, "predictions"), codec)
    )
    counts = results_by_request(everything)
    assert counts == {f"r{n}": 1 for n in range(10_000)}
    assert {r.version for r in results} == {1}
    # Training -> serving parity: every stream score has the same bits as what the package
    # itself computes for the same row in one batch (the runtime is batch-size invariant).
    expected = load_package(package_v1[0], threads=1).predict_rows(rows)
    by_id = {r.request_id: r for r in results}
    streamed = np.array([by_id[f"r{n}"].scores for n in range(10_000)])
    gap = np.abs(streamed - expected.astype(np.float64))
    assert (gap == 0).all(), f"{int((gap > 0).sum())} scores differ, largest {gap.max()}"
    assert [r.label for r in (by_id[f"r{n}"] for n in range(10_000))] == expected.argmax(
        axis=1
    ).tolist()
    loaded = lifecycle_events(kafka_settings.bootstrap_servers, codec, model, (t.ModelLoaded,))
    assert [event.version for event in loaded] == [1]
    assert took_s < TEN_K_ALLOWANCE_S, took_s


def _not_yet(reason: str) -> None:
    raise NotYet(reason)


def test_sigkilled_worker_restarted_three_times_loses_and_duplicates_nothing(
    kafka_settings, unique: str, package_v1: tuple[Path, str]
) -> None:
    model = f"credit{unique}"
    serve_model(kafka_settings, model, package_v1)
    codec = request_codec()
    producer = RequestProducer(kafka_settings, codec)
    rows, _ = credit_rows(10_000, seed=11)
    bootstrap = kafka_settings.bootstrap_servers
    workers = {i: start_worker(bootstrap, model, index=i) for i in (0, 1)}
    reader = TopicReader(bootstrap, data_topic(model, "predictions"), codec)
    chooser = random.Random(42)
    try:
        for number in range(500):
            producer.send(model, f"r{number}", rows[number])
        producer.flush()
        # Both workers stream before the first kill, so kills land mid-run, not at boot.
        reader.read_until(lambda r: len(r) >= 500, timeout_s=60, settle_s=0)
        kill_at = set(chooser.sample(range(1_000, 9_500), 3))
        for number in range(500, 10_000):
            producer.send(model, f"r{number}", rows[number])
            if number % 100 == 0:
                producer.flush()
                time.sleep(0.1)  # ~1,000 requests/s: the run spans the kills and restarts
            if number in kill_at:
                victim = chooser.choice(sorted(workers))
                workers[victim].send_signal(signal.SIGKILL)
                workers[victim].wait()
                workers[victim] = start_worker(bootstrap, model, index=victim)
        producer.flush()
        reader.read_until(lambda r: len(r) >= 10_000, timeout_s=180, settle_s=0)
    finally:
        stop_workers(workers.values())
        reader.close()
    # Duplicates are looked for up to the end offsets, not in a settle window.
    results = list(read_events(bootstrap, data_topic(model, "predictions"), codec))
    counts = results_by_request(results)
    duplicated = sorted(rid for rid, n in counts.items() if n > 1)
    missing = {f"r{n}" for n in range(10_000)} - set(counts)
    assert not duplicated, f"{len(duplicated)} duplicated, e.g. {duplicated[:5]}"
    assert not missing, f"{len(missing)} lost, e.g. {sorted(missing)[:5]}"
    assert len(results) == 10_000


def _malformed(codec, model: str, number: int, row: dict) -> bytes:  # type: ignore[no-untyped-def]
    """One of ten kinds of bad request, chosen by ``number``."""
    generic = codec.store.reader("modelbus.events.PredictionRequest")
    good = encode_request(codec, model, f"r{number}", row)
    kind = number % 10
    if kind == 0:
        return b"not avro at all"
    if kind == 1:
        return good[: len(good) // 2]
    if kind == 2:
        return b"\xc3\x01" + bytes(8) + good[10:]
    if kind == 3:
        return encode_request(codec, model, f"r{number}", {**row, "salary": math.nan})
    if kind == 4:
        return encode_request(codec, model, f"r{number}", {**row, "loan": math.inf})
    if kind == 5:
        return encode_request(codec, "some-other-model", f"r{number}", row)
    if kind == 6:
        return good + bytes(70_000)
    features = dict(row)
    if kind == 7:
        del features["age"]
    elif kind == 8:
        features["age"] = "forty"
    else:
        features["shoe_size"] = 42
    record = {
        "meta": new_meta("test").to_avro(),
        "request_id": f"r{number}",
        "model": model,
        "sent_at": now_utc(),
        "features": features,
    }
    return codec.encode_record(record, generic)


def test_mixed_stream_gives_results_for_good_requests_and_dead_letters_for_bad(
    kafka_settings, unique: str, package_v1: tuple[Path, str]
) -> None:
    model = f"credit{unique}"
    serve_model(kafka_settings, model, package_v1)
    codec = request_codec()
    producer = RequestProducer(kafka_settings, codec)
    rows, _ = credit_rows(4_000, seed=5)
    bad = set(random.Random(3).sample(range(4_000), 200))
    for number, row in enumerate(rows):
        if number in bad:
            producer.send_raw(model, f"r{number}", _malformed(codec, model, number, row))
        else:
            producer.send(model, f"r{number}", row)
    producer.flush()
    bootstrap = kafka_settings.bootstrap_servers
    worker = start_worker(bootstrap, model)
    results_reader = TopicReader(bootstrap, data_topic(model, "predictions"), codec)
    letters_reader = TopicReader(bootstrap, data_topic(model, "dlq"), codec)
    try:
        results = results_reader.read_until(lambda r: len(r) >= 3_800, timeout_s=120)
        letters = letters_reader.read_until(lambda r: len(r) >= 200, timeout_s=30)
    finally:
        stop_workers([worker])
        results_reader.close()
        letters_reader.close()
    good_ids = {f"r{n}" for n in range(4_000) if n not in bad}
    bad_ids = {f"r{n}" for n in bad}
    assert results_by_request(results) == dict.fromkeys(good_ids, 1)
    letter_ids = [letter.key.decode() for letter in letters]
    assert sorted(letter_ids) == sorted(bad_ids)
    by_kind = {int(letter.key.decode()[1:]) % 10: letter for letter in letters}
    assert by_kind[0].error_type == "BadMagic"
    assert by_kind[1].error_type in ("TruncatedMessage", "BodyMismatch")
    assert by_kind[2].error_type == "UnknownSchema"
    assert "'salary' is nan" in by_kind[3].reason
    assert "'loan' is inf" in by_kind[4].reason
    assert by_kind[5].error_type == "UnknownModel"
    assert by_kind[6].error_type == "OversizedMessage"
    assert "missing field(s) 'age'" in by_kind[7].reason
    assert "'age' is str" in by_kind[8].reason
    assert "unknown field(s) 'shoe_size'" in by_kind[9].reason
    assert all(letter.model == model and letter.value for letter in letters)


def _group_members(bootstrap: str, group: str, *, expected: int) -> dict[str, list[int]]:
    """Member id -> assigned partitions, once ``expected`` members hold partitions."""
    admin = AdminClient(client_config(bootstrap))

    @retry(stop=stop_after_delay(90), wait=wait_fixed(0.5), reraise=True)
    def poll() -> dict[str, list[int]]:
        description = admin.describe_consumer_groups([group])[group].result()
        members = {
            m.member_id: [tp.partition for tp in m.assignment.topic_partitions]
            for m in description.members
        }
        assert len(members) == expected, members
        assert all(members.values()), members
        return members

    return poll()


def test_two_worker_processes_share_the_consumer_group(
    kafka_settings, unique: str, package_v1: tuple[Path, str]
) -> None:
    model = f"credit{unique}"
    serve_model(kafka_settings, model, package_v1)
    codec = request_codec()
    producer = RequestProducer(kafka_settings, codec)
    rows, _ = credit_rows(2_000, seed=8)
    bootstrap = kafka_settings.bootstrap_servers
    supervisor = subprocess.Popen(
        [sys.executable, "-m", "modelbus_inference", "run", "--workers", "2"],
        env={
            **os.environ,
            "MODELBUS_BOOTSTRAP_SERVERS": bootstrap,
            "MODELBUS_INFERENCE_MODEL": model,
            "MODELBUS_INFERENCE_CONTRACT": "credit",
            "MODELBUS_INFERENCE_HTTP_PORT": "0",
            "MODELBUS_INFERENCE_SERVE_LATEST_WITHOUT_ROUTES": "true",
        },
    )
    reader = TopicReader(bootstrap, data_topic(model, "predictions"), codec)
    try:
        members = _group_members(bootstrap, f"modelbus-inference-{model}", expected=2)
        for number, row in enumerate(rows):
            producer.send(model, f"r{number}", row)
        producer.flush()
        results = reader.read_until(lambda r: len(r) >= 2_000, timeout_s=120)
    finally:
        stop_workers([supervisor])
        reader.close()
    assert sorted(len(partitions) for partitions in members.values()) == [2, 2]
    assert results_by_request(results) == {f"r{n}": 1 for n in range(2_000)}
    slots = {r.meta.producer.partition("@")[0] for r in results}
    assert slots == {"inference-0", "inference-1"}

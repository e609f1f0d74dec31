"""At-least-once delivery: two workers SIGKILLed in turn mid-stream lose no request.

A killed worker's uncommitted tail is scored again after its restart, so some requests are
answered twice; the test counts them and checks each second answer is the first one again.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections import defaultdict
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import Consumer

from modelbus.bus.reading import follow_from_now, read_only_consumer, replay
from modelbus.bus.topics import data_topic
from tests.support.broker import (
    RequestProducer,
    TopicReader,
    create_model_topics,
    free_port_block,
    group_members,
    publish_lifecycle,
    request_codec,
)
from tests.support.events import registered
from tests.support.packages import credit_rows
from tests.support.processes import start_worker, stop_workers
from tests.support.results import results_by_request
from tests.support.waiting import NotYet, eventually

pytestmark = pytest.mark.integration

REQUESTS = 4_000
BAD_REQUESTS = 20


def _answer(result: Any) -> tuple[Any, ...]:
    """Everything a result says about its request; floats as hex, so equal means same bits."""
    return (
        result.request_id,
        result.meta.causation_id,
        result.meta.correlation_id,
        result.version,
        result.variant,
        result.label,
        tuple(float(score).hex() for score in result.scores),
    )


def _to_end(bootstrap: str, topic: str) -> list[Any]:
    """Every record of ``topic`` up to its end offsets as of now (key and value)."""
    consumer = read_only_consumer(bootstrap, purpose="test-to-end")
    try:
        return list(replay(consumer, topic))
    finally:
        consumer.close()


def _kill_on_first_answer(
    watcher: Consumer, codec: Any, worker: subprocess.Popen[bytes], first_request: int
) -> int:
    """SIGKILL ``worker`` the moment it answers a request numbered ``first_request`` or more;
    returns how many such requests the watcher had seen answered (by anyone) by then."""
    answered: set[str] = set()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for message in watcher.consume(500, 0.01):
            if message.error() is not None:
                continue
            result = codec.decode(message.value())
            if int(result.request_id[1:]) < first_request:
                continue
            answered.add(result.request_id)
            if str(result.meta.producer).endswith(f":{worker.pid}"):
                worker.send_signal(signal.SIGKILL)
                assert worker.wait(10) == -signal.SIGKILL
                return len(answered)
    pytest.fail(f"worker {worker.pid} answered nothing from r{first_request} on in 60 s")


def test_two_workers_sigkilled_in_turn_mid_stream_lose_no_request_and_repeat_answers_exactly(
    kafka_settings, unique: str, package_v1: tuple[Path, str]
) -> None:
    model = f"credit{unique}"
    create_model_topics(kafka_settings, model)
    codec = request_codec()
    publish_lifecycle(kafka_settings, codec, registered(model, 1, *package_v1))
    producer = RequestProducer(kafka_settings, codec)
    rows, _ = credit_rows(REQUESTS, seed=29)
    bootstrap = kafka_settings.bootstrap_servers
    group = f"modelbus-inference-{model}"
    predictions = data_topic(model, "predictions")

    http_port = free_port_block(2)  # worker i answers on http_port + i

    def start(index: int) -> subprocess.Popen[bytes]:
        # Small batches: a worker's share of a burst spans many commits, so a kill lands
        # mid-stream.
        return start_worker(
            bootstrap,
            model,
            index=index,
            http_port=http_port,
            MODELBUS_INFERENCE_DELIVERY="at_least_once",
            MODELBUS_INFERENCE_MAX_BATCH_SIZE="20",
        )

    workers = {i: start(i) for i in (0, 1)}
    reader = TopicReader(bootstrap, predictions, codec)
    watcher = follow_from_now(
        bootstrap, predictions, purpose="test-kill-timer", extra={"fetch.wait.max.ms": 5}
    )
    killed: list[int] = []

    def send(first: int, last: int) -> None:
        for number in range(first, last):
            producer.send(model, f"r{number}", rows[number])
        producer.flush()

    try:

        def both_hold_partitions() -> None:
            members = group_members(bootstrap, group)
            if len(members) != 2 or not all(members.values()):
                raise NotYet(members)

        eventually(both_hold_partitions, timeout_s=90)
        send(0, 1_000)
        for number in range(BAD_REQUESTS):
            producer.send_raw(model, f"bad{number}", b"not a request")
        producer.flush()
        reader.read_until(lambda r: len(results_by_request(r)) >= 1_000, timeout_s=60, settle_s=0)

        # Liveness works the same: each worker's offset commits show as its last commit age.
        def healthy_with_a_commit(index: int) -> dict[str, Any]:
            answer = httpx.get(f"http://127.0.0.1:{http_port + index}/healthz", timeout=5)
            health = {"status": answer.status_code, **answer.json()}
            if health["last_commit_age_s"] is None:
                raise NotYet(health)  # a commit's outcome is served by the worker's next poll
            return health

        for index in (0, 1):
            health = eventually(partial(healthy_with_a_commit, index), timeout_s=10)
            assert (health["status"], health["state"]) == (200, "streaming")

        # Worker 1 dies with a burst in flight and comes back in its slot (static membership).
        send(1_000, 2_500)
        killed.append(workers[1].pid)
        seen = _kill_on_first_answer(watcher, codec, workers[1], 1_000)
        print(f"worker 1 killed with {seen} of r1000..r2499 seen answered")
        workers[1] = start(1)

        # Then worker 0, with the next burst in flight.
        send(2_500, REQUESTS)
        killed.append(workers[0].pid)
        seen = _kill_on_first_answer(watcher, codec, workers[0], 2_500)
        print(f"worker 0 killed with {seen} of r2500..r3999 seen answered")
        workers[0] = start(0)

        reader.read_until(
            lambda r: len(results_by_request(r)) >= REQUESTS, timeout_s=120, settle_s=0
        )
    finally:
        stop_workers(workers.values())
        reader.close()
        watcher.close()

    # Read to the end offsets once every worker stopped: nothing more can arrive.
    envelopes = _to_end(bootstrap, predictions)
    first: dict[str, tuple[Any, ...]] = {}
    copies: dict[str, int] = defaultdict(int)
    for envelope in envelopes:
        result = codec.decode(envelope.value)
        assert envelope.key == result.request_id.encode()  # keyed by request
        copies[result.request_id] += 1
        # Every duplicate is the first answer again, bit for bit (only its own event id differs).
        assert first.setdefault(result.request_id, _answer(result)) == _answer(result)
    assert set(copies) == {f"r{n}" for n in range(REQUESTS)}  # none lost, none invented
    duplicates = sum(copies.values()) - REQUESTS
    assert duplicates >= 0
    print(f"at-least-once: {REQUESTS} requests, {duplicates} answered again after the kills")

    letters = [codec.decode(e.value) for e in _to_end(bootstrap, data_topic(model, "dlq"))]
    assert {bytes(letter.key).decode() for letter in letters} == {
        f"bad{n}" for n in range(BAD_REQUESTS)
    }
    # The kills landed after the killed processes had answered (they were mid-stream).
    producers = {str(r.meta.producer) for r in reader.records}
    assert all(any(p.endswith(f":{pid}") for p in producers) for pid in killed)

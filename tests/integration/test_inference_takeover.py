"""A SIGKILLed worker left dead: the survivor takes its partitions; the supervisor restarts one."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from modelbus.bus.reading import follow_from_now, read_events, read_only_consumer, watermarks
from modelbus.bus.topics import data_topic
from modelbus.events import types as t
from tests.support.broker import (
    RequestProducer,
    TopicReader,
    group_members,
    member_id,
    request_codec,
    serve_model,
    uncommitted_records,
)
from tests.support.packages import CONTRACT, credit_rows
from tests.support.processes import REPO, start_worker, stop_workers
from tests.support.results import results_by_request
from tests.support.waiting import NotYet, eventually

pytestmark = pytest.mark.integration


def _slot(result: Any) -> str:
    """``inference-1`` from a result's producer ``inference-1@host``."""
    return str(result.meta.producer).partition("@")[0]


def test_a_sigkilled_worker_left_dead_has_its_partitions_taken_over_with_no_loss_or_duplicate(
    kafka_settings, unique: str, package_v1: tuple[Path, str]
) -> None:
    model = f"credit{unique}"
    serve_model(kafka_settings, model, package_v1)
    codec = request_codec()
    producer = RequestProducer(kafka_settings, codec)
    rows, _ = credit_rows(6_000, seed=13)
    bootstrap = kafka_settings.bootstrap_servers
    group = f"modelbus-inference-{model}"
    predictions = data_topic(model, "predictions")
    # A dead worker's open transaction is aborted by the broker after this timeout.
    # Small batches: many short transactions, so many chances to stop worker 1 inside one.
    env = {
        "MODELBUS_INFERENCE_TRANSACTION_TIMEOUT_MS": "5000",
        "MODELBUS_INFERENCE_MAX_BATCH_SIZE": "20",
    }
    workers = {i: start_worker(bootstrap, model, index=i, **env) for i in (0, 1)}
    reader = TopicReader(bootstrap, predictions, codec)
    watcher = follow_from_now(
        bootstrap,
        predictions,
        purpose="test-uncommitted",
        extra={"isolation.level": "read_uncommitted", "fetch.wait.max.ms": 5},
    )
    try:
        # Precondition: both workers hold partitions and commit results for them.
        def both_hold_partitions() -> dict[str, list[int]]:
            members = group_members(bootstrap, group)
            if len(members) != 2 or not all(members.values()):
                raise NotYet(members)
            return members

        before = eventually(both_hold_partitions, timeout_s=90)
        for number in range(400):
            producer.send(model, f"r{number}", rows[number])
        producer.flush()
        warm = reader.read_until(
            lambda r: len(results_by_request(r)) >= 400, timeout_s=90, settle_s=0
        )
        assert {_slot(r) for r in warm} == {"inference-0", "inference-1"}
        victim_partitions = before[f"{group}-1"]

        # A burst; worker 1 is SIGKILLed inside an open transaction: on each of its results
        # seen uncommitted it is stopped (SIGSTOP), and killed only if that result is still
        # above its partition's last stable offset, i.e. its transaction has not committed
        # (a stopped worker cannot commit it later); otherwise it goes on (SIGCONT).
        for number in range(400, 4_000):
            producer.send(model, f"r{number}", rows[number])
        producer.flush()
        lso_probe = read_only_consumer(bootstrap, purpose="test-lso")
        killed_inside: tuple[int, int] | None = None
        deadline = time.monotonic() + 60
        stable_seen: dict[int, int] = {}  # partition -> a last stable offset already read
        while killed_inside is None and time.monotonic() < deadline:
            message = watcher.poll(0.01)
            if message is None or message.error() is not None:
                continue
            partition, offset = message.partition(), message.offset()
            if offset < stable_seen.get(partition, 0):
                continue  # committed already: the watcher is catching up
            if _slot(codec.decode(message.value())) != "inference-1":
                continue
            workers[1].send_signal(signal.SIGSTOP)
            # A read_committed reader's high watermark is the last stable offset: it stops
            # below the partition's oldest open transaction. Still there a second after the
            # stop, the transaction is open, not committing: a commit the worker had asked
            # for just before its stop would have written its markers by then.
            stable = watermarks(lso_probe, predictions)[partition][1]
            if stable <= offset:
                time.sleep(1.0)
                stable = watermarks(lso_probe, predictions)[partition][1]
            stable_seen[partition] = stable
            if stable <= offset:
                workers[1].send_signal(signal.SIGKILL)
                killed_inside = partition, offset
            else:
                workers[1].send_signal(signal.SIGCONT)
        lso_probe.close()
        if killed_inside is None:
            pytest.fail("worker 1 had no open transaction to be killed in within 60 s")
        assert workers[1].wait(10) == -signal.SIGKILL

        for number in range(4_000, 6_000):
            producer.send(model, f"r{number}", rows[number])
        producer.flush()
        reader.read_until(lambda r: len(results_by_request(r)) >= 6_000, timeout_s=120, settle_s=0)

        def survivor_holds_everything() -> dict[str, list[int]]:
            members = group_members(bootstrap, group)
            if members != {f"{group}-0": [0, 1, 2, 3]}:
                raise NotYet(members)
            return members

        # Static membership: the dead member keeps its slot until session.timeout.ms (6 s).
        eventually(survivor_holds_everything, timeout_s=60)
    finally:
        stop_workers(workers.values())
        reader.close()
        watcher.close()

    committed = list(read_events(bootstrap, predictions, codec))
    everything = uncommitted_records(bootstrap, predictions, codec)
    counts = Counter(r.request_id for r in committed)
    assert counts == Counter({f"r{n}": 1 for n in range(6_000)})
    # The kill landed inside an open transaction: its records, the one it was killed on
    # among them, are ones a read_committed reader never sees.
    committed_ids = {r.meta.event_id for r in committed}
    aborted = [r for r in everything if r.meta.event_id not in committed_ids]
    assert aborted, "the open transaction's records were not found"
    print(f"killed inside the transaction holding {killed_inside}: {len(aborted)} aborted")
    assert {_slot(r) for r in aborted} == {"inference-1"}
    # Every aborted result was answered again, once, by the survivor.
    redone = {
        r.request_id: _slot(r) for r in committed if r.request_id in {a.request_id for a in aborted}
    }
    assert set(redone) == {a.request_id for a in aborted}
    assert set(redone.values()) <= {"inference-0"}
    assert sorted(before[f"{group}-0"] + victim_partitions) == [0, 1, 2, 3]
    late = [r for r in committed if int(r.request_id[1:]) >= 4_000]
    assert {_slot(r) for r in late} == {"inference-0"}


def _children(pid: int) -> dict[int, int]:
    """Worker index -> process id of each worker ``pid`` started (Linux /proc)."""
    found: dict[int, int] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
            except FileNotFoundError:
                continue
            if b"--worker-index" not in argv:  # exited, not yet reaped
                continue
            found[int(argv[argv.index(b"--worker-index") + 1])] = int(child)
    return found


def test_the_supervisor_restarts_a_sigkilled_worker_which_then_serves_again(
    kafka_settings, unique: str, package_v1: tuple[Path, str]
) -> None:
    model = f"credit{unique}"
    serve_model(kafka_settings, model, package_v1)
    codec = request_codec()
    producer = RequestProducer(kafka_settings, codec)
    rows, _ = credit_rows(1_000, seed=17)
    bootstrap = kafka_settings.bootstrap_servers
    # One worker runs in-process; the supervisor (and its restart loop) runs with two or more.
    supervisor = subprocess.Popen(
        [sys.executable, "-m", "modelbus_inference", "run", "--workers", "2"],
        env={
            **os.environ,
            "MODELBUS_BOOTSTRAP_SERVERS": bootstrap,
            "MODELBUS_INFERENCE_MODEL": model,
            "MODELBUS_INFERENCE_CONTRACT": CONTRACT,
            "MODELBUS_INFERENCE_HTTP_PORT": "0",
            "MODELBUS_INFERENCE_SESSION_TIMEOUT_MS": "6000",
            "MODELBUS_INFERENCE_SERVE_LATEST_WITHOUT_ROUTES": "true",
        },
        cwd=REPO,
    )
    reader = TopicReader(bootstrap, data_topic(model, "predictions"), codec)
    try:

        def two_workers() -> dict[int, int]:
            children = _children(supervisor.pid)
            if sorted(children) != [0, 1]:
                raise NotYet(children)
            return children

        first = eventually(two_workers, timeout_s=30)
        for number in range(500):
            producer.send(model, f"r{number}", rows[number])
        producer.flush()
        reader.read_until(lambda r: len(results_by_request(r)) >= 500, timeout_s=90, settle_s=0)
        group = f"modelbus-inference-{model}"
        killed_member = member_id(bootstrap, group, f"{group}-1")
        os.kill(first[1], signal.SIGKILL)

        def replaced() -> dict[int, int]:
            children = two_workers()
            if children[1] == first[1]:
                raise NotYet("worker 1 was not restarted yet")
            return children

        second = eventually(replaced, timeout_s=30)

        def both_slots_hold_partitions() -> None:
            members = group_members(bootstrap, group)
            if sorted(members) != [f"{group}-0", f"{group}-1"] or not all(members.values()):
                raise NotYet(members)
            # The dead process keeps slot 1 until its session times out; the new one has
            # joined when the slot has a new member id.
            if member_id(bootstrap, group, f"{group}-1") == killed_member:
                raise NotYet("slot 1 is still the killed worker's")

        # Slot 1 is back in the group (static membership) before the next requests go out.
        eventually(both_slots_hold_partitions, timeout_s=120)
        restarted = f"inference-1@{socket.gethostname()}:{second[1]}"
        sent = 500

        def the_restarted_worker_answers() -> list[t.PredictionResult]:
            # The group may still be settling (a member's view runs ahead of its fetching):
            # requests go out in rounds until the new process has answered some of them.
            nonlocal sent
            for number in range(sent, sent + 100):
                producer.send(model, f"r{number}", rows[number % len(rows)])
            producer.flush()
            sent += 100
            answered = reader.read_until(
                lambda r: len(results_by_request(r)) >= sent, timeout_s=90, settle_s=0
            )
            late = {str(r.meta.producer) for r in answered if int(r.request_id[1:]) >= 500}
            if restarted not in late:
                raise NotYet(f"requests after the kill answered by {sorted(late)}")
            return answered

        results = eventually(the_restarted_worker_answers, timeout_s=120)
        assert supervisor.poll() is None
    finally:
        stop_workers([supervisor])
        reader.close()
    assert second[0] == first[0]
    assert results_by_request(results) == {f"r{n}": 1 for n in range(sent)}

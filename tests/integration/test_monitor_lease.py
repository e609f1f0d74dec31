"""Two monitors of one group: one acts, the other stands by and takes over when it dies."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from modelbus.data import generate_credit
from modelbus.events import types as t
from tests.support.broker import create_model_topics, publish_lifecycle, request_codec
from tests.support.events import registered
from tests.support.monitor import Traffic, health_covering, start_monitor
from tests.support.processes import stop_workers
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration


def _pid(window: t.ModelHealth) -> int:
    return int(window.meta.producer.rsplit(":", 1)[1])


@pytest.mark.timeout(600)  # three waits of up to 120 s each, sized for a loaded machine
def test_a_standby_monitor_writes_nothing_then_takes_over_with_no_window_lost_or_repeated(
    kafka_settings, unique: str, package_v1: tuple[Path, str]
) -> None:
    model = f"credit{unique}"
    create_model_topics(kafka_settings, model)
    publish_lifecycle(kafka_settings, request_codec(), registered(model, 1, *package_v1))
    bootstrap = kafka_settings.bootstrap_servers
    rows, labels = generate_credit(6_000, seed=51)
    traffic = Traffic(kafka_settings, model)
    first = start_monitor(bootstrap, model)
    second = None
    try:
        traffic.send(rows[:2_000], labels[:2_000])
        eventually(health_covering(bootstrap, model, 2_000), timeout_s=120)
        second = start_monitor(bootstrap, model)
        traffic.send(rows[2_000:4_000], labels[2_000:4_000], first=2_000)
        before_kill = eventually(health_covering(bootstrap, model, 4_000), timeout_s=120)
        assert second.poll() is None, "the standby monitor exited"
        first.send_signal(signal.SIGKILL)
        first.wait()
        traffic.send(rows[4_000:], labels[4_000:], first=4_000)
        windows = eventually(health_covering(bootstrap, model, 6_000), timeout_s=120)
    finally:
        stop_workers([m for m in (first, second) if m is not None])
    assert {_pid(w) for w in before_kill} == {first.pid}
    assert second is not None
    assert {_pid(w) for w in windows} == {first.pid, second.pid}
    keys = [(w.version, w.variant, w.window_start) for w in windows]
    assert len(keys) == len(set(keys))
    assert sum(w.requests for w in windows) == 6_000
    assert sum(w.labelled for w in windows) == 6_000

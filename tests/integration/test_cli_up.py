"""``modelbus up``, ``status`` and ``down`` on a broker of the test's own.

``up`` starts all five services with their default consumer groups, which would act on the
shared test broker's lifecycle log (and register other tests' models again), so this module
starts a broker for itself. The services run in a temporary working directory, where their
default state (registry database, artifacts, pid and log files) lands.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from modelbus.bus.security import client_config
from modelbus.config import KafkaSettings
from tests.support.broker import DedicatedKafka, dedicated_kafka, publish_lifecycle, request_codec
from tests.support.events import registered
from tests.support.packages import credit_rows
from tests.support.ports import free_port
from tests.support.waiting import NotYet, eventually

pytestmark = pytest.mark.integration
SERVICES = ("registry", "trainer", "inference", "monitor", "deployer")
# What each service joins at start with its default settings; inference joins
# modelbus-inference-credit once it has a version to serve.
GROUPS = ("modelbus-registry", "modelbus-trainer", "modelbus-monitor-lease", "modelbus-deployer")


@pytest.fixture(scope="module")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DedicatedKafka]:
    with dedicated_kafka(tmp_path_factory.mktemp("up-broker")) as broker:
        yield broker


@pytest.fixture
def cli(kafka: DedicatedKafka, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MODELBUS_BOOTSTRAP_SERVERS", kafka.bootstrap)
    monkeypatch.setenv("MODELBUS_RUN_DIR", str(tmp_path / ".run"))
    monkeypatch.setenv("MODELBUS_REGISTRY_API_TOKEN", "t" * 32)
    monkeypatch.setenv("MODELBUS_REGISTRY_PORT", str(free_port()))
    monkeypatch.setenv("MODELBUS_INFERENCE_HTTP_PORT", str(free_port()))

    def invoke(*args: str) -> subprocess.CompletedProcess[str]:
        # A process of its own, as a user runs it: the services it starts are not the
        # test process's children (which would linger as zombies after `down`).
        return subprocess.run(
            [sys.executable, "-m", "modelbus.cli", *args],
            capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "200"},
        )  # fmt: skip

    return invoke


def _groups(bootstrap: str) -> set[str]:
    admin = AdminClient(client_config(bootstrap))
    listed = admin.list_consumer_groups(request_timeout=10).result()
    return {group.group_id for group in listed.valid}


@pytest.mark.timeout(600)  # a broker and five services start on a loaded 2-core machine
def test_up_starts_five_services_that_take_a_registered_model_into_service_and_down_stops_them(
    cli: Any, kafka: DedicatedKafka, tmp_path: Path, package_v1: tuple[Path, str]
) -> None:
    up = cli("up")
    logs = tmp_path / ".run" / "logs"
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        pids = dict(re.findall(r"^(\w+)\s+pid (\d+)", up.stdout, flags=re.M))
        assert sorted(pids) == sorted(SERVICES), up.stdout

        def joined(groups: set[str]) -> Any:
            def check() -> set[str]:
                for name in SERVICES:
                    try:
                        os.kill(int(pids[name]), 0)
                    except ProcessLookupError:
                        log = (logs / f"{name}.log").read_text()
                        pytest.fail(f"{name} exited after `up`:\n{log[-3000:]}")
                found = _groups(kafka.bootstrap)
                if not groups <= found:
                    raise NotYet(f"groups so far: {sorted(found)}")
                return found

            return check

        eventually(joined(set(GROUPS)), 180)
        # The registry's event for a trained package: the deployer, started by `up` too,
        # makes the first version champion, and inference loads it and answers.
        settings = KafkaSettings(bootstrap_servers=kafka.bootstrap)
        publish_lifecycle(settings, request_codec(), registered("credit", 1, *package_v1))
        eventually(joined({"modelbus-inference-credit"}), 180)
        [row], _ = credit_rows(1, seed=4)
        answer = cli("predict", "credit", json.dumps(row), "--timeout-s", "120")
        assert answer.returncode == 0, answer.stdout + answer.stderr
        assert "model=credit, version=1, variant=champion" in " ".join(answer.stdout.split())
        status = cli("status")
        assert status.returncode == 0, status.stdout + status.stderr
        for name in SERVICES:
            assert re.search(rf"^{name}\s+running, pid {pids[name]}$", status.stdout, re.M)
    finally:
        down = cli("down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert down.stdout.split("\n")[:-1] == [f"{name:10} stopped" for name in SERVICES]
    for name in SERVICES:
        with pytest.raises(ProcessLookupError):
            os.kill(int(pids[name]), 0)

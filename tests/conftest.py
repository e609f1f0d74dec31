"""Shared fixtures. Integration and e2e tests share one real broker per test session.

The broker is, in order: ``MODELBUS_BOOTSTRAP_SERVERS``/``KAFKA_BOOTSTRAP_SERVERS`` when set
(``make test`` sets it after ``make kafka-up``); Kafka in testcontainers when a Docker engine
answers; else the native broker from infra/kafka, started here on a free port and stopped at
the end.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.ports import free_port

REPO = Path(__file__).resolve().parents[1]


def _docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="session", autouse=True)
def signing_keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway key per role, named in the environment every service subprocess inherits."""
    from tests.support.signing import ensure_test_keys

    return ensure_test_keys(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """host:port of a real Kafka broker."""
    configured = os.environ.get("MODELBUS_BOOTSTRAP_SERVERS") or os.environ.get(
        "KAFKA_BOOTSTRAP_SERVERS"
    )
    if configured:
        yield configured
        return
    if _docker_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer("apache/kafka:4.1.1").with_kraft() as container:
            yield container.get_bootstrap_server()
        return
    port, controller_port = free_port(), free_port()
    env = {
        **os.environ,
        "KAFKA_PORT": str(port),
        "KAFKA_CONTROLLER_PORT": str(controller_port),
        "MODELBUS_RUN_DIR": str(tmp_path_factory.mktemp("kafka")),
    }
    script = str(REPO / "infra" / "kafka" / "kafka.sh")
    subprocess.run([script, "up"], env=env, check=True)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([script, "down"], env=env, check=False)


@pytest.fixture(scope="session")
def kafka_settings(kafka_bootstrap: str):  # type: ignore[no-untyped-def]
    """KafkaSettings for the session's broker, with the topics created."""
    from modelbus.bus import ensure_topics, topic_specs
    from modelbus.config import KafkaSettings

    settings = KafkaSettings(bootstrap_servers=kafka_bootstrap, data_partitions=4)
    ensure_topics(
        kafka_bootstrap,
        topic_specs(settings.models, data_partitions=4, retention_ms=settings.data_retention_ms),
    )
    return settings


@pytest.fixture(scope="module")
def package_v1(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A trained credit package and its sha256."""
    from tests.support.packages import build_credit_package

    directory = tmp_path_factory.mktemp("packages") / "v1"
    return directory, build_credit_package(directory, seed=1)


@pytest.fixture
def unique() -> str:
    """A short unique suffix for group ids, topics and model names in one test."""
    return uuid.uuid4().hex[:10]

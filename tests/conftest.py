"""Shared fixtures. Integration and e2e tests share one real broker per test session.

The broker is, in order: ``MODELBUS_BOOTSTRAP_SERVERS``/``KAFKA_BOOTSTRAP_SERVERS`` when set
(``make test`` sets it after ``make kafka-up``); Kafka in testcontainers when a Docker engine
answers; else the native broker from infra/kafka, started here on a free port and stopped at
the end.

Security: ``make test`` starts the tests' broker with SCRAM and ACLs (TEST_SECURITY=sasl) and
runs the session as its admin principal (``MODELBUS_KAFKA_*``, inherited by every process a
test starts; brokers a test starts itself take the same credentials, see
``tests.support.broker.dedicated_kafka``). Before any test runs, the session checks that its
settings reach the broker, and stops with the reason when they do not.
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


def pytest_configure(config: pytest.Config) -> None:
    """Every process of the session runs as the session's principal: a credentials directory
    (which would make ``modelbus up`` start each service as its own principal of one broker)
    is dropped, and incomplete security settings stop the session at once."""
    from pydantic import ValidationError

    from modelbus.bus.security import SecuritySettings

    os.environ.pop("MODELBUS_KAFKA_CREDENTIALS_DIR", None)
    try:
        SecuritySettings()
    except ValidationError as error:
        pytest.exit(f"the tests' Kafka security settings are incomplete: {error}", returncode=4)


def _secured_by_kafka_sh(bootstrap: str) -> Path | None:
    """The credentials directory of the broker on ``bootstrap`` when infra/kafka started it
    under .run/test with security on (what ``make test`` does), else None."""
    port = bootstrap.split(",")[0].rsplit(":", 1)[-1]
    run_dir = Path(os.environ.get("TEST_RUN_DIR", REPO / ".run" / "test")) / f"kafka-{port}"
    properties = run_dir / "server.properties"
    if properties.is_file() and "sasl.enabled.mechanisms=" in properties.read_text():
        return run_dir / "credentials"
    return None


def pytest_collection_finish(session: pytest.Session) -> None:
    """Before the first test that needs the broker: can this session's settings reach it?
    One clear message instead of a timeout in every test."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    from modelbus.bus.security import SecuritySettings, client_config

    bootstrap = os.environ.get("MODELBUS_BOOTSTRAP_SERVERS") or os.environ.get(
        "KAFKA_BOOTSTRAP_SERVERS"
    )
    if not bootstrap or not any(item.get_closest_marker("integration") for item in session.items):
        return
    security = SecuritySettings()
    who = f"as {security.principal}" if security.principal else "unauthenticated"
    credentials = _secured_by_kafka_sh(bootstrap)
    where = credentials or "<run dir>/kafka-<port>/credentials"
    how = (
        "`make test` does this for you; by hand: "
        f"`source {where}/admin.env && unset MODELBUS_KAFKA_CREDENTIALS_DIR`, "
        "or run the suite on a plaintext broker with `make test TEST_SECURITY=none`"
    )
    if credentials is not None and security.principal is None:
        pytest.exit(
            f"the tests' broker {bootstrap} runs with security on (SCRAM, ACLs) but this session "
            f"has no credentials (MODELBUS_KAFKA_SASL_USERNAME/PASSWORD are unset): {how}",
            returncode=4,
        )
    try:
        AdminClient(client_config(bootstrap)).list_topics(timeout=30)
    except KafkaException as error:
        pytest.exit(
            f"the tests' broker {bootstrap} did not answer this session {who} "
            f"({security.security_protocol}) within 30 s: {error.args[0]}. If it runs with "
            f"security on, the session needs its admin credentials ({how}); if it runs "
            "without, unset MODELBUS_KAFKA_*.",
            returncode=4,
        )


@pytest.fixture(scope="session", autouse=True)
def signing_keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway key per role, named in the environment every service subprocess inherits."""
    from tests.support.signing import ensure_test_keys

    return ensure_test_keys(tmp_path_factory.mktemp("keys"))


@pytest.fixture(autouse=True)
def mlflow_tracking_uri_restored() -> Iterator[None]:
    """``mlflow.set_tracking_uri`` also sets MLFLOW_TRACKING_URI in this process's
    environment; a test that calls it must not steer the services later tests start."""
    before = os.environ.get("MLFLOW_TRACKING_URI")
    yield
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = before


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

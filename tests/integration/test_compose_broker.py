"""docker-compose.yml's broker, run here without Docker: infra/kafka/docker-entrypoint.sh with the
credentials and certificate the compose `credentials` service makes (``kafka.sh
make-credentials`` with its environment), the apache/kafka image's two scripts standing in as
thin wrappers around this repository's broker jars. The compose `topics` service's commands then
run against it as admin, and services' principals talk over TLS on both of its client listeners
(the Docker network's and the host's); plaintext SASL gets nothing."""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from cryptography import x509

from modelbus.bus import LIFECYCLE_TOPIC, Publisher
from modelbus.bus.connection_check import BrokerUnreachable, check_connection
from modelbus.bus.reading import read_events
from modelbus.bus.schema_topic import kafka_schema_store
from modelbus.bus.security import SecuritySettings
from modelbus.config import KafkaSettings
from modelbus.events import build_codec
from tests.support.broker import free_port_block, read_env_file
from tests.support.events import registered

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

REPO = Path(__file__).resolve().parents[2]
KAFKA = REPO / "infra" / "kafka"
START_TIMEOUT_S = 120.0
MODEL = f"compose{uuid.uuid4().hex[:8]}"
PRINCIPALS = ("admin", "registry", "trainer", "deployer", "inference", "monitor", "client")

# The apache/kafka image's scripts the entrypoint calls, as this repository's jars run them.
KAFKA_STORAGE = f"""#!/usr/bin/env bash
exec java -cp '{KAFKA}/libs/*' -Dlog4j2.configurationFile={KAFKA}/log4j2.yaml \\
  kafka.tools.StorageTool "$@"
"""
KAFKA_SERVER_START = f"""#!/usr/bin/env bash
exec java -Xmx512m -cp '{KAFKA}/libs/*' -Dlog4j2.configurationFile={KAFKA}/log4j2.yaml \\
  kafka.Kafka "$@"
"""


@dataclass
class ComposeBroker:
    internal: str
    """The listener compose's services use (kafka:9092 there), here on loopback."""
    host: str
    """The listener published to the host (127.0.0.1:19092 there)."""
    secrets: Path
    tls: Path

    def security(self, principal: str, **changes: object) -> SecuritySettings:
        """``principal``'s client settings, read from the env file compose's services source."""
        env = read_env_file(self.secrets / f"{principal}.env")
        prefix = "MODELBUS_KAFKA_"
        fields = {k.removeprefix(prefix).lower(): v for k, v in env.items() if k.startswith(prefix)}
        return SecuritySettings.model_validate({**fields, **changes})

    def become(self, principal: str, patch: pytest.MonkeyPatch) -> None:
        """Make this process's clients connect as ``principal`` (settings come from the env)."""
        for name, value in read_env_file(self.secrets / f"{principal}.env").items():
            patch.setenv(name, value)

    def env(self, principal: str) -> dict[str, str]:
        """This process's environment with ``principal``'s settings, as compose's commands run."""
        return {
            **os.environ,
            **read_env_file(self.secrets / f"{principal}.env"),
            "MODELBUS_BOOTSTRAP_SERVERS": self.internal,
        }


def _compose_environment(service: str) -> dict[str, str]:
    """The environment docker-compose.yml gives ``service``, each ``${NAME:-default}`` at its
    default (what `docker compose up` does with nothing set)."""
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    environment = compose["services"][service]["environment"]
    return {
        name: re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(value))
        for name, value in environment.items()
    }


@pytest.fixture(scope="module")
def compose_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeBroker]:
    root = tmp_path_factory.mktemp("compose")
    port = free_port_block(3)
    client_port, controller_port, host_port = port, port + 1, port + 2
    # The credentials service: kafka.sh make-credentials, then a cluster id.
    subprocess.run(
        [KAFKA / "kafka.sh", "make-credentials"],
        env={**os.environ, **_compose_environment("credentials"),
             "MODELBUS_RUN_DIR": str(root), "KAFKA_PORT": str(client_port)},
        check=True,
    )  # fmt: skip
    secrets = root / f"kafka-{client_port}" / "credentials"
    (secrets / "cluster.id").write_text(
        base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=") + "\n"
    )
    home = root / "kafka-home" / "bin"
    home.mkdir(parents=True)
    for name, script in (
        ("kafka-storage.sh", KAFKA_STORAGE), ("kafka-server-start.sh", KAFKA_SERVER_START)
    ):  # fmt: skip
        (home / name).write_text(script)
        (home / name).chmod(0o755)
    log = (root / "kafka.log").open("wb")
    broker = subprocess.Popen(
        ["bash", KAFKA / "docker-entrypoint.sh"],
        env={
            **os.environ,
            "SECURITY": _compose_environment("kafka")["SECURITY"],
            "NODE_ID": "1",
            "VOTERS": f"1@127.0.0.1:{controller_port}",
            "ADVERTISED": f"127.0.0.1:{client_port}",
            "PORT": str(client_port),
            "CONTROLLER_PORT": str(controller_port),
            "HOST_PORT": str(host_port),
            "SECRETS": str(secrets),
            "DATA_DIR": str(root / "data"),
            "CONFIG": str(root / "server.properties"),
            "KAFKA_HOME": str(home.parent),
        },
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    found = ComposeBroker(
        f"127.0.0.1:{client_port}", f"127.0.0.1:{host_port}", secrets, secrets.parent / "tls"
    )
    try:
        check_connection(
            found.internal, security=found.security("admin"), timeout_s=START_TIMEOUT_S
        )
        yield found
    except BrokerUnreachable:
        log.flush()
        tail = (root / "kafka.log").read_text(errors="replace")[-3000:]
        pytest.fail(f"the compose broker did not answer in {START_TIMEOUT_S} s:\n{tail}")
    finally:
        broker.terminate()
        try:
            broker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            broker.kill()
            broker.wait()
        log.close()


def test_the_broker_certificate_names_every_host_compose_dials(
    compose_broker: ComposeBroker,
) -> None:
    """Clients and peers check the certificate names the host they dialled: kafka (and the
    cluster profile's kafka-2, kafka-3) on the Docker network, 127.0.0.1 from the host, and
    localhost in the broker's healthcheck."""
    certificate = x509.load_pem_x509_certificate((compose_broker.tls / "broker.crt").read_bytes())
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(names.get_values_for_type(x509.DNSName)) == {
        "localhost",
        "kafka",
        "kafka-2",
        "kafka-3",
    }
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]


def test_every_principal_authenticates_over_tls_on_both_client_listeners(
    compose_broker: ComposeBroker,
) -> None:
    for principal in PRINCIPALS:
        security = compose_broker.security(principal)
        assert security.security_protocol == "SASL_SSL"
        assert security.ssl_ca_location == compose_broker.tls / "ca.pem"
        for listener in (compose_broker.internal, compose_broker.host):
            check_connection(listener, security=security, timeout_s=30)


def test_plaintext_sasl_gets_nothing_from_the_compose_broker(
    compose_broker: ComposeBroker,
) -> None:
    plaintext = compose_broker.security(
        "client", security_protocol="SASL_PLAINTEXT", ssl_ca_location=None
    )
    started = time.monotonic()
    with pytest.raises(BrokerUnreachable) as refused:
        check_connection(compose_broker.host, security=plaintext, timeout_s=20)
    assert time.monotonic() - started < 20
    assert "SASL_SSL" in str(refused.value)


def test_the_topics_service_commands_then_services_exchange_events_as_their_principals(
    compose_broker: ComposeBroker, tmp_path: Path
) -> None:
    # docker-compose.yml's `topics` service, as admin: the topics, then the ACL table.
    for command in (["topics", "create"], ["acls", "apply", "--models", MODEL]):
        done = subprocess.run(
            [sys.executable, "-m", "modelbus.cli", *command],
            env=compose_broker.env("admin"),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr
    # The registry writes the lifecycle log; the deployer, which only reads it, reads it back.
    sent = registered(MODEL, 1, tmp_path, "1" * 64)
    with pytest.MonkeyPatch.context() as patch:
        compose_broker.become("registry", patch)
        publisher = Publisher(
            KafkaSettings(bootstrap_servers=compose_broker.internal),
            build_codec(),
            client_id=f"test-compose-{MODEL}",
        )
        publisher.publish(sent)
        publisher.flush()
        del publisher
    with pytest.MonkeyPatch.context() as patch:
        compose_broker.become("deployer", patch)
        codec = build_codec(kafka_schema_store(compose_broker.host))
        found = [
            event
            for event in read_events(compose_broker.host, LIFECYCLE_TOPIC, codec, key=MODEL)
            if event.meta.event_id == sent.meta.event_id
        ]
    assert found == [sent]

"""The test suite never reads or writes the user's broker (the one `make kafka-up`/`modelbus up`
start on the default port): its lifecycle log is left as it was.

Set MODELBUS_TESTS_ON_USER_BROKER=1 to run the suite against the user's broker on purpose.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from modelbus.bus.security import client_config
from modelbus.config import KafkaSettings

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
OPT_IN = "MODELBUS_TESTS_ON_USER_BROKER"
USER_BOOTSTRAP = str(KafkaSettings.model_fields["bootstrap_servers"].default)


def _port(bootstrap_servers: str) -> int:
    return int(bootstrap_servers.split(",")[0].rsplit(":", 1)[1])


@pytest.mark.skipif(os.environ.get(OPT_IN) == "1", reason=f"{OPT_IN}=1: user's broker on purpose")
def test_the_suite_talks_to_a_broker_other_than_the_users(kafka_bootstrap: str) -> None:
    user_port = _port(USER_BOOTSTRAP)

    assert kafka_bootstrap != USER_BOOTSTRAP
    assert all(_port(address) != user_port for address in kafka_bootstrap.split(","))
    # Same host and port is not the only way in: the cluster itself must be another one.
    cluster_id = AdminClient(client_config(kafka_bootstrap)).list_topics(timeout=10).cluster_id
    users = REPO / ".run" / f"kafka-{user_port}" / "cluster.id"
    if users.exists():  # the user's broker's identity, read from its folder, never asked
        assert cluster_id != users.read_text().strip()


def test_make_test_points_the_suite_at_the_tests_own_broker_and_folder() -> None:
    makefile = (REPO / "Makefile").read_text()
    settings = dict(re.findall(r"^(\w+) \?= (.+)$", makefile, flags=re.MULTILINE))
    [recipe] = re.findall(r"^test:.*\n\t(.+)$", makefile, flags=re.MULTILINE)

    assert settings["KAFKA_PORT"] == str(_port(USER_BOOTSTRAP))
    assert settings["TEST_KAFKA_PORT"] != settings["KAFKA_PORT"]
    assert "MODELBUS_BOOTSTRAP_SERVERS=127.0.0.1:$(TEST_KAFKA_PORT)" in recipe
    assert settings["TEST_RUN_DIR"] == "$(CURDIR)/.run/test"  # data kept apart from .run/kafka-*

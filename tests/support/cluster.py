"""A three-broker KRaft cluster of the test's own, from the same jars as the single broker."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka.admin import AdminClient

KAFKA = str(Path(__file__).resolve().parents[2] / "infra" / "kafka" / "kafka.sh")


def free_block(size: int) -> int:
    """The first port of ``size`` consecutive free ports."""
    for base in range(21_000, 29_000, 50):
        try:
            for port in range(base, base + size):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no block of free ports between 21000 and 29000")


@dataclass
class Cluster:
    """A running cluster: its bootstrap list, and broker actions by node id."""

    env: dict[str, str]
    bootstrap: str

    def broker(self, action: str, node: int) -> None:
        """``kafka.sh <action> <node>``: stop-broker, kill-broker or start-broker."""
        subprocess.run([KAFKA, action, str(node)], env=self.env, check=True)

    def leader_of(self, topic: str, partition: int = 0) -> int:
        """The node id leading ``topic``'s ``partition`` now."""
        metadata = AdminClient({"bootstrap.servers": self.bootstrap}).list_topics(topic, timeout=10)
        return metadata.topics[topic].partitions[partition].leader


@contextlib.contextmanager
def three_brokers(run_dir: Path) -> Iterator[Cluster]:
    """Start a three-broker cluster with its state under ``run_dir``; stop it at the end."""
    env = {
        **os.environ,
        "KAFKA_PORT": str(free_block(6)),
        "KAFKA_BROKERS": "3",
        "MODELBUS_RUN_DIR": str(run_dir),
    }
    subprocess.run([KAFKA, "up"], env=env, check=True)
    bootstrap = subprocess.run(
        [KAFKA, "bootstrap"], env=env, check=True, capture_output=True, text=True
    ).stdout.strip()
    try:
        yield Cluster(env, bootstrap)
    finally:
        subprocess.run([KAFKA, "down"], env=env, check=False)

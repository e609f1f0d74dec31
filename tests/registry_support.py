"""Helpers the registry tests share: real packages, the events about them, services, the bus."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from confluent_kafka import Consumer, TopicPartition
from tenacity import retry, retry_if_exception_type, stop_after_delay, wait_fixed

from modelbus.bus import LIFECYCLE_TOPIC, Publisher
from modelbus.bus.reading import read_topic
from modelbus.bus.schema_topic import kafka_schema_store
from modelbus.config import KafkaSettings
from modelbus.data import generate_credit
from modelbus.events import GenericRecord, build_codec, load_contract, new_meta
from modelbus.events import types as t
from modelbus.events.schemas import fingerprint_of
from modelbus.packaging import (
    Preprocessor,
    build_profile,
    capture_environment,
    package_sha256,
    write_package,
)

TOKEN = "registry-test-token-0123456789"


def credit_contract() -> dict[str, Any]:
    """The credit data contract."""
    return load_contract("credit")


def make_package(directory: Path, model: str, *, seed: int = 7) -> str:
    """Write a small credit package named ``model``; returns its sha256 (of manifest.json)."""
    contract = credit_contract()
    rows, labels = generate_credit(60, seed=seed)
    preprocessor = Preprocessor.fit(rows, contract)
    architecture = {
        "kind": "mlp",
        "input_dim": preprocessor.n_outputs,
        "hidden": [4],
        "activation": "relu",
        "n_classes": 2,
    }
    rng = np.random.default_rng(seed)
    weights = {
        "0.weight": rng.normal(size=(4, preprocessor.n_outputs)).astype(np.float32),
        "0.bias": np.zeros(4, dtype=np.float32),
        "2.weight": rng.normal(size=(2, 4)).astype(np.float32),
        "2.bias": np.zeros(2, dtype=np.float32),
    }
    write_package(
        directory,
        name=model,
        contract=contract,
        preprocessor=preprocessor,
        runtime="torch-mlp",
        weights=weights,
        architecture=architecture,
        profile=build_profile(rows, contract, labels=labels),
        metrics={"accuracy": 0.75},
        params={"hidden": "4", "seed": str(seed)},
    )
    return package_sha256(directory)


def model_trained(
    model: str,
    artifact_uri: str,
    artifact_sha256: str,
    *,
    run_id: str | None = None,
    parent_version: int | None = None,
    cause: Any = None,
) -> t.ModelTrained:
    """The ModelTrained a trainer would publish for that package."""
    return t.ModelTrained(
        meta=new_meta("trainer@test", cause=cause),
        model=model,
        job_id=f"job-{uuid.uuid4().hex[:8]}",
        run_id=run_id or uuid.uuid4().hex,
        artifact_uri=artifact_uri,
        artifact_sha256=artifact_sha256,
        contract_fingerprint=fingerprint_of(credit_contract()).hex(),
        metrics={"accuracy": 0.75, "roc_auc": 0.8125},
        params={"hidden": "4", "seed": "7"},
        data=t.DataLineage(
            snapshot_sha256="ab" * 32,
            rows=60,
            sources=[t.DataSource(kind="file", uri="reference/credit.jsonl", rows=60)],
        ),
        code=t.CodeVersion(git_sha="c0ffee" * 6 + "c0ff", dirty=False),
        environment=capture_environment(),
        parent_version=parent_version,
    )


def meta_at(when: datetime, producer: str = "deployer@test") -> t.EventMeta:
    """Meta of an event that happened at ``when``."""
    return t.EventMeta(
        event_id=str(uuid.uuid4()),
        occurred_at=when,
        producer=producer,
        correlation_id=str(uuid.uuid4()),
        causation_id=None,
    )


class NotYet(AssertionError):
    """The outcome awaited has not happened yet."""


def eventually(check: Callable[[], Any], timeout_s: float = 60.0) -> Any:
    """Call ``check`` until it stops raising NotYet, or fail after ``timeout_s``."""
    return retry(
        retry=retry_if_exception_type(NotYet),
        stop=stop_after_delay(timeout_s),
        wait=wait_fixed(0.5),
        reraise=True,
    )(check)()


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_at_log_end(bootstrap_servers: str, group_id: str) -> None:
    """Commit ``group_id`` at the lifecycle log's current end, so history before now is skipped."""
    consumer = Consumer({"bootstrap.servers": bootstrap_servers, "group.id": group_id})
    try:
        metadata = consumer.list_topics(LIFECYCLE_TOPIC, timeout=10)
        ends = [
            TopicPartition(
                LIFECYCLE_TOPIC,
                partition,
                consumer.get_watermark_offsets(
                    TopicPartition(LIFECYCLE_TOPIC, partition), timeout=10
                )[1],
            )
            for partition in metadata.topics[LIFECYCLE_TOPIC].partitions
        ]
        consumer.commit(offsets=ends, asynchronous=False)
    finally:
        consumer.close()


@contextlib.contextmanager
def service(
    module: str, env: dict[str, str], cwd: Path, *, ready: Callable[[], None] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m <module> run`` with ``env``, stopped by SIGTERM at the end; log in cwd."""
    log = cwd / f"{module}.log"
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", module, "run"],
            env={**os.environ, **env},
            cwd=cwd,
            stdout=output,
            stderr=subprocess.STDOUT,
        )

    def alive_and_ready() -> None:
        if process.poll() is not None:
            raise RuntimeError(f"{module} exited with {process.returncode}:\n{log.read_text()}")
        if ready is not None:
            ready()

    try:
        eventually(alive_and_ready, timeout_s=120)
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def http_ready(url: str) -> Callable[[], None]:
    """A readiness check: ``url`` answers 2xx."""

    def check() -> None:
        try:
            httpx.get(url, timeout=2).raise_for_status()
        except httpx.HTTPError as error:
            raise NotYet(str(error)) from error

    return check


def registry_env(
    bootstrap_servers: str, root: Path, *, port: int, tracking_uri: str, group_id: str
) -> dict[str, str]:
    """Environment of a registry process keeping everything under ``root``."""
    return {
        "MODELBUS_BOOTSTRAP_SERVERS": bootstrap_servers,
        "MODELBUS_REGISTRY_DB_URL": f"sqlite:///{root / 'registry.db'}",
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MODELBUS_REGISTRY_PACKAGES_DIR": str(root / "packages"),
        "MODELBUS_REGISTRY_GROUP_ID": group_id,
        "MODELBUS_REGISTRY_PORT": str(port),
        "MODELBUS_REGISTRY_API_TOKEN": TOKEN,
    }


class Bus:
    """The test's side of the broker: publish events, read a model's lifecycle, wait on it."""

    def __init__(self, settings: KafkaSettings, client_id: str) -> None:
        self.settings = settings
        self.codec = build_codec(kafka_schema_store(settings.bootstrap_servers))
        self.publisher = Publisher(settings, self.codec, client_id=client_id)

    def publish(self, event: Any) -> None:
        """Put an event on the bus and wait for the broker to have it."""
        self.publisher.publish(event)
        self.publisher.flush()

    def lifecycle(self, model: str) -> list[Any]:
        """Every lifecycle event about ``model`` so far, in log order."""
        events = []
        for envelope in read_topic(self.settings.bootstrap_servers, LIFECYCLE_TOPIC):
            if envelope.key != model.encode() or not envelope.value:
                continue
            event = self.codec.decode(envelope.value)
            if not isinstance(event, GenericRecord):
                events.append(event)
        return events

    def wait_for(
        self,
        model: str,
        kind: type,
        count: int = 1,
        *,
        where: Callable[[Any], bool] = lambda _event: True,
        timeout_s: float = 60.0,
    ) -> list[Any]:
        """At least ``count`` events of type ``kind`` about ``model`` matching ``where``."""

        def check() -> list[Any]:
            found = [e for e in self.lifecycle(model) if isinstance(e, kind) and where(e)]
            if len(found) < count:
                raise NotYet(f"{len(found)} {kind.__name__} for {model} so far")
            return found

        return eventually(check, timeout_s)

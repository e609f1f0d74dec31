"""Helpers the inference tests and benchmark share: a real credit package, real topics, workers.

No mocks: packages are trained (tiny, seeded) and written with modelbus.packaging; requests
and lifecycle events go through the real broker.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from modelbus.bus import LIFECYCLE_TOPIC, Publisher, ensure_topics, topic_specs
from modelbus.bus.topics import data_topic
from modelbus.config import KafkaSettings
from modelbus.events import Codec, build_codec, load_contract, new_meta
from modelbus.events import types as t
from modelbus.events.meta import now_utc

REPO = Path(__file__).resolve().parents[2]
CONTRACT = "credit"
TYPED_REQUEST = "modelbus.models.credit.PredictionRequest"


def credit_contract() -> dict[str, Any]:
    """The credit data contract."""
    return load_contract(CONTRACT)


def credit_rows(n_rows: int, *, seed: int = 7) -> tuple[list[dict], list[int]]:
    """Seeded Agrawal rows and labels."""
    from modelbus.data import generate_credit

    return generate_credit(n_rows, seed=seed)


def build_credit_package(
    directory: Path, *, name: str = "credit", seed: int = 1, n_rows: int = 2000, epochs: int = 30
) -> str:
    """Train a small seeded MLP on generated credit data, write its package; returns sha256."""
    import torch

    from modelbus.packaging import (
        Preprocessor,
        build_mlp,
        build_profile,
        package_sha256,
        write_package,
    )

    contract = credit_contract()
    rows, labels = credit_rows(n_rows, seed=seed)
    preprocessor = Preprocessor.fit(rows, contract)
    x = torch.from_numpy(preprocessor.transform(rows))
    y = torch.tensor(labels)
    architecture = {
        "kind": "mlp",
        "input_dim": int(x.shape[1]),
        "hidden": [32, 16],
        "n_classes": 2,
        "activation": "relu",
    }
    torch.manual_seed(seed)
    module = build_mlp(architecture)
    optimizer = torch.optim.Adam(module.parameters(), lr=0.01)
    for _ in range(epochs):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(module(x), y)
        loss.backward()
        optimizer.step()
    weights = {key: value.detach().numpy() for key, value in module.state_dict().items()}
    write_package(
        directory,
        name=name,
        contract=contract,
        preprocessor=preprocessor,
        runtime="torch-mlp",
        weights=weights,
        architecture=architecture,
        profile=build_profile(rows, contract, labels=labels),
        metrics={"loss": float(loss.detach())},
        params={"seed": str(seed)},
    )
    return package_sha256(directory)


def create_model_topics(settings: KafkaSettings, model: str, partitions: int = 4) -> None:
    """The model's data topics plus the shared ones."""
    ensure_topics(
        settings.bootstrap_servers,
        topic_specs([model], data_partitions=partitions, retention_ms=settings.data_retention_ms),
    )


def request_codec() -> Codec:
    """A codec that knows every event and the credit contract."""
    return build_codec(models=(CONTRACT,))


def encode_request(
    codec: Codec, model: str, request_id: str, features: dict[str, Any], *, sent_at: Any = None
) -> bytes:
    """A typed credit PredictionRequest, single-object encoded."""
    known = codec.store.reader(TYPED_REQUEST)
    assert known is not None
    record = {
        "meta": new_meta("test-producer").to_avro(),
        "request_id": request_id,
        "model": model,
        "sent_at": sent_at or now_utc(),
        "features": features,
    }
    return codec.encode_record(record, known)


class RequestProducer:
    """Produces encoded requests keyed by request id (schemas published first)."""

    def __init__(self, settings: KafkaSettings, codec: Codec) -> None:
        self.codec = codec
        self.publisher = Publisher(settings, codec, client_id=f"test-requests-{uuid.uuid4()}")
        for name in (TYPED_REQUEST, "modelbus.events.PredictionRequest"):
            known = codec.store.reader(name)
            assert known is not None
            self.publisher.ensure_schema_published(known)
        self.producer = Producer({"bootstrap.servers": settings.bootstrap_servers, "linger.ms": 5})

    def send_raw(self, model: str, key: str, value: bytes) -> None:
        """Produce bytes as they are."""
        while True:
            try:
                self.producer.produce(data_topic(model, "requests"), value, key.encode())
                break
            except BufferError:
                self.producer.poll(0.05)
        self.producer.poll(0)

    def send(self, model: str, request_id: str, features: dict[str, Any]) -> None:
        """Produce one valid typed request."""
        self.send_raw(model, request_id, encode_request(self.codec, model, request_id, features))

    def flush(self) -> None:
        """Wait until the broker has everything."""
        assert self.producer.flush(30) == 0


def publish_lifecycle(settings: KafkaSettings, codec: Codec, *events: Any) -> None:
    """Publish lifecycle events (keyed by model) and wait for them."""
    publisher = Publisher(settings, codec, client_id=f"test-lifecycle-{uuid.uuid4()}")
    for event in events:
        publisher.publish(event)
    publisher.flush()


def registered(model: str, version: int, directory: Path, sha256: str) -> t.ModelRegistered:
    """A ModelRegistered for a package directory."""
    return t.ModelRegistered(
        meta=new_meta("test-registry"),
        model=model,
        version=version,
        run_id=f"run-{version}",
        artifact_uri=directory.as_uri(),
        artifact_sha256=sha256,
        metrics={},
    )


def shifted(model: str, routes: list[tuple[str, int, float]]) -> t.TrafficShifted:
    """A TrafficShifted with (variant, version, weight_pct) routes."""
    return t.TrafficShifted(
        meta=new_meta("test-deployer"),
        model=model,
        routes=[t.Route(variant=v, version=n, weight_pct=w) for v, n, w in routes],
        reason="test",
    )


class TopicReader:
    """Reads a topic from the start with read_committed; decodes with ``codec``."""

    def __init__(self, bootstrap: str, topic: str, codec: Codec, partitions: int = 4) -> None:
        self.codec = codec
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"test-reader-{uuid.uuid4()}",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
            }
        )
        self.consumer.assign(
            [TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)]
        )
        self.records: list[Any] = []

    def read_until(
        self, done: Callable[[list[Any]], bool], *, timeout_s: float, settle_s: float = 2.0
    ) -> list[Any]:
        """Read until ``done(records)``, then ``settle_s`` more to catch any extra; or timeout."""
        deadline = time.monotonic() + timeout_s
        settled_at: float | None = None
        while time.monotonic() < deadline:
            if settled_at is None and done(self.records):
                settled_at = time.monotonic() + settle_s
            if settled_at is not None and time.monotonic() > settled_at:
                break
            for message in self.consumer.consume(1000, 0.2):
                if message.error() is None:
                    self.records.append(self.codec.decode(message.value()))
        return self.records

    def close(self) -> None:
        """Close the consumer."""
        self.consumer.close()


def lifecycle_events(bootstrap: str, codec: Codec, model: str, kinds: tuple[type, ...]) -> list:
    """Every lifecycle event of ``model`` of the given kinds, read now."""
    reader = TopicReader(bootstrap, LIFECYCLE_TOPIC, codec, partitions=1)
    try:
        reader.read_until(lambda _: False, timeout_s=2.0)
    finally:
        reader.close()
    return [e for e in reader.records if isinstance(e, kinds) and getattr(e, "model", "") == model]


def start_worker(
    bootstrap: str, model: str, *, index: int = 0, http_port: int = 0, **env: str
) -> subprocess.Popen[bytes]:
    """``python -m modelbus_inference run`` for one worker slot, as a real process."""
    environment = {
        **os.environ,
        "MODELBUS_BOOTSTRAP_SERVERS": bootstrap,
        "MODELBUS_INFERENCE_MODEL": model,
        "MODELBUS_INFERENCE_CONTRACT": CONTRACT,
        "MODELBUS_INFERENCE_HTTP_PORT": str(http_port),
        "MODELBUS_INFERENCE_SESSION_TIMEOUT_MS": "6000",
        **env,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "modelbus_inference", "run", "--worker-index", str(index)],
        env=environment,
        cwd=REPO,
    )


def stop_workers(workers: Iterable[subprocess.Popen[bytes]]) -> None:
    """SIGTERM, then SIGKILL after 20 s."""
    workers = list(workers)
    for worker in workers:
        if worker.poll() is None:
            worker.terminate()
    for worker in workers:
        try:
            worker.wait(20)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def results_by_request(results: Iterable[Any]) -> dict[str, int]:
    """How many PredictionResults each request id got."""
    counts: dict[str, int] = {}
    for result in results:
        counts[result.request_id] = counts.get(result.request_id, 0) + 1
    return counts


def finite(scores: list[float]) -> bool:
    """All scores finite."""
    return bool(np.isfinite(np.asarray(scores)).all())

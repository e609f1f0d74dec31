"""Wires settings, codec, Kafka adapters, models and HTTP into one running worker."""

from __future__ import annotations

import gc
import threading
from dataclasses import dataclass
from functools import partial

import structlog
import uvicorn

from modelbus.bus import Dispatcher, Publisher, kafka_schema_store
from modelbus.events import Codec, build_codec, load_contract
from modelbus.events.meta import producer_id
from modelbus.service import inject
from modelbus.trust import load_signer, load_trusted
from modelbus_inference.api import create_app
from modelbus_inference.config import Settings
from modelbus_inference.handlers import EVENT_HANDLERS
from modelbus_inference.lifecycle import LifecycleFollower
from modelbus_inference.loading import load_packaged_model
from modelbus_inference.metrics import Metrics
from modelbus_inference.predict import BatchPredictor
from modelbus_inference.serving import ModelManager
from modelbus_inference.stream import StreamLoop
from modelbus_inference.validation import ContractFields, RequestDecoder

log = structlog.get_logger(__name__)
OUTPUT_SCHEMAS = (
    "modelbus.events.PredictionResult",
    "modelbus.events.DeadLetter",
    "modelbus.events.ModelLoaded",
    "modelbus.events.ModelLoadFailed",
)


@dataclass
class Worker:
    """One inference worker: lifecycle follower, stream loop and HTTP API."""

    settings: Settings
    models: ModelManager
    metrics: Metrics
    lifecycle: LifecycleFollower
    stream: StreamLoop
    http_server: uvicorn.Server | None

    def run(self, stop: threading.Event) -> None:
        """Replay the lifecycle, wait for a model, then stream until ``stop``."""
        read = self.lifecycle.replay(self.settings.lifecycle_replay_timeout_s)
        log.info("lifecycle replayed", events=read, model=self.settings.model)
        self.lifecycle.start(stop)
        while not self.models.ready.wait(1.0):
            if stop.is_set():
                return
            log.info("waiting for a loadable version", model=self.settings.model)
        if self.http_server is not None:
            threading.Thread(target=self.http_server.run, name="http", daemon=True).start()
        # Start-up objects (torch, fastapi, schemas) never die: keep them out of GC scans,
        # so full collections stay short on the hot path.
        gc.freeze()
        self.metrics.watch_gc()
        self.stream.start()
        log.info("streaming", topic=self.stream.topic, worker=self.settings.worker_name)
        try:
            self.stream.run(stop)
        finally:
            if self.http_server is not None:
                self.http_server.should_exit = True


def lifecycle_publisher(settings: Settings, codec: Codec) -> Publisher:
    """What a worker writes to the lifecycle log (ModelLoaded, ModelLoadFailed, refusals),
    signed as inference in either delivery mode: the deployer rolls a canary back only on a
    ModelLoadFailed inference signed. KeysMissing without the inference key."""
    signer = load_signer("inference")
    return Publisher(settings.kafka, codec, client_id=settings.worker_name, signer=signer)


def bootstrap(settings: Settings) -> Worker:
    """Build a worker from settings."""
    kafka = settings.kafka
    contract = load_contract(settings.contract_name)
    codec = build_codec(
        kafka_schema_store(kafka.bootstrap_servers), models=(settings.contract_name,)
    )
    typed_request = codec.store.reader(
        f"modelbus.models.{settings.contract_name}.PredictionRequest"
    )
    if typed_request is None:
        raise RuntimeError(f"contract {settings.contract_name!r} gave no typed request schema")
    worker_id = producer_id(f"inference-{settings.worker_index}")
    publisher = lifecycle_publisher(settings, codec)  # refuses to start without a key
    for name in OUTPUT_SCHEMAS:
        known = codec.store.reader(name)
        assert known is not None, name
        publisher.ensure_schema_published(known)
    loader = partial(
        load_packaged_model,
        policy=settings.environment_policy,
        contract=contract,
        threads=settings.torch_threads,
    )
    models = ModelManager(
        settings.model,
        loader,
        worker=worker_id,
        serve_latest_without_routes=settings.serve_latest_without_routes,
    )
    metrics = Metrics()
    decoder = RequestDecoder(
        codec,
        typed_request,
        contract,
        model=settings.model,
        max_request_bytes=settings.max_request_bytes,
    )
    predictor = BatchPredictor(
        model=settings.model, decoder=decoder, codec=codec, producer=worker_id, metrics=metrics
    )
    trusted = load_trusted()  # refuse to start without keys: decisions must be signed
    dispatcher = Dispatcher(
        codec, inject(EVENT_HANDLERS, {"models": models}), producer=worker_id, trusted=trusted
    )
    http_server = None
    if settings.http_port:
        app = create_app(settings.model, models, ContractFields(contract), metrics)
        http_server = uvicorn.Server(
            uvicorn.Config(
                app,
                host=settings.http_host,
                port=settings.http_port + settings.worker_index,
                log_level="warning",
            )
        )
    return Worker(
        settings=settings,
        models=models,
        metrics=metrics,
        lifecycle=LifecycleFollower(
            kafka.bootstrap_servers,
            codec,
            models,
            dispatcher,
            publisher,
            trusted,
            writes_dead_letters=settings.worker_index == 0,
        ),
        stream=StreamLoop(settings, predictor, models),
        http_server=http_server,
    )

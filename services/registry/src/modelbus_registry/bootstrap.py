"""Wiring: adapters into handlers, and the one process that consumes and serves HTTP."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import structlog
import uvicorn
from fastapi import FastAPI

from modelbus.bus import LIFECYCLE_TOPIC, Dispatcher
from modelbus.bus.aio import AsyncConsumerLoop, AsyncPublisher
from modelbus.bus.dispatch import Handler
from modelbus.bus.schema_topic import kafka_schema_store
from modelbus.bus.topics import ensure_deployment_topics
from modelbus.events import Codec, build_codec
from modelbus.events.meta import producer_id
from modelbus.service import inject
from modelbus.trust import Signer, TrustedKeys, load_signer, load_trusted
from modelbus_registry.api import create_app
from modelbus_registry.artifacts import PackageVault
from modelbus_registry.config import Settings
from modelbus_registry.db import make_engine
from modelbus_registry.domain import AnnouncedVersions
from modelbus_registry.handlers import EVENT_HANDLERS, adopt_log, resync_mirror
from modelbus_registry.lifecycle_log import LoggedVersions
from modelbus_registry.mirror import Mirror, MlflowMirror, NoMirror
from modelbus_registry.store import RegistryStore

log = structlog.get_logger(__name__)


@dataclass
class Registry:
    """The registry's adapters and its handlers bound to them."""

    settings: Settings
    store: RegistryStore
    vault: PackageVault
    mirror: Mirror
    producer: str
    handlers: dict[type, list[Handler]]
    announced: AnnouncedVersions
    codec: Codec
    signer: Signer
    trusted: TrustedKeys

    def app(self, publisher: Any, lifespan: Any = None) -> FastAPI:
        """The REST API over this registry, publishing requests through ``publisher``."""
        token = self.settings.api_token
        return create_app(
            self.store,
            self.vault,
            publisher,
            api_token=token.get_secret_value() if self.settings.auth_enabled and token else None,
            trainable_models=self.settings.kafka.models,
            producer=self.producer,
            lifespan=lifespan,
            max_body_bytes=self.settings.max_body_bytes,
        )


def bootstrap(
    settings: Settings,
    *,
    mirror: Mirror | None = None,
    announced: AnnouncedVersions | None = None,
) -> Registry:
    """Build and wire the adapters from ``settings``; nothing is read, created or published.

    ``mirror`` replaces MLflow and ``announced`` the lifecycle log (e.g. in tests).
    """
    if mirror is None:
        mirror = (
            MlflowMirror(settings.mlflow_tracking_uri) if settings.mlflow_mirror else NoMirror()
        )
    kafka = settings.kafka
    codec = build_codec(kafka_schema_store(kafka.bootstrap_servers), models=tuple(kafka.models))
    if announced is None:
        announced = LoggedVersions(kafka.bootstrap_servers, codec)
    store = RegistryStore(make_engine(settings.db_url))
    vault = PackageVault(
        settings.packages_dir,
        allowed_roots=settings.artifact_roots,
        mlflow_tracking_uri=settings.mlflow_tracking_uri,
    )
    producer = producer_id("registry")
    handlers = inject(
        EVENT_HANDLERS,
        {
            "store": store,
            "vault": vault,
            "mirror": mirror,
            "producer": producer,
            "announced": announced,
        },
    )
    # Refuse to start without keys: ModelRegistered is signed, ModelTrained must be.
    signer, trusted = load_signer("registry"), load_trusted()
    return Registry(
        settings, store, vault, mirror, producer, handlers, announced, codec, signer, trusted
    )


async def run(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Consume modelbus.lifecycle and serve the REST API until ``stop`` is set or a signal."""
    stop = stop or asyncio.Event()
    kafka = settings.kafka
    registry = await asyncio.to_thread(bootstrap, settings)
    await asyncio.to_thread(ensure_deployment_topics, kafka)
    codec = registry.codec
    await asyncio.to_thread(codec.store.warm_up)
    # The log is the truth: adopt what it announced before consuming or writing anything.
    await asyncio.to_thread(
        adopt_log, registry.store, registry.vault, registry.mirror, registry.announced
    )
    publisher = AsyncPublisher(kafka, codec, client_id=registry.producer, signer=registry.signer)
    consumer = AsyncConsumerLoop(
        kafka,
        group_id=settings.group_id,
        topics=[LIFECYCLE_TOPIC],
        dispatcher=Dispatcher(
            codec,
            registry.handlers,
            producer=registry.producer,
            max_message_bytes=kafka.max_message_bytes,
            trusted=registry.trusted,
        ),
        publisher=publisher,
    )
    await asyncio.to_thread(resync_mirror, registry.store, registry.mirror)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await publisher.start()
        await consumer.start()
        consuming = asyncio.create_task(consumer.run(stop))
        # A consumer that dies takes the process with it, rather than serving a stale registry.
        consuming.add_done_callback(lambda _task: stop.set())
        log.info("registry consuming", topic=LIFECYCLE_TOPIC, group=settings.group_id)
        try:
            yield
        finally:
            stop.set()
            await consuming
            await consumer.stop()
            await publisher.stop()

    server = uvicorn.Server(
        uvicorn.Config(
            registry.app(publisher, lifespan=lifespan),
            host=settings.host,
            port=settings.port,
            log_config=None,
            lifespan="on",
        )
    )

    async def exit_on_stop() -> None:
        await stop.wait()
        server.should_exit = True

    watcher = asyncio.create_task(exit_on_stop())
    try:
        await server.serve()
    finally:
        stop.set()
        await watcher
        if isinstance(registry.announced, LoggedVersions):
            registry.announced.close()

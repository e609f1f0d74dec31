"""The REST API: read models, versions, lineage and alias history; ask for changes by event."""

from __future__ import annotations

import inspect
import secrets
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from modelbus.packaging import PackageError
from modelbus_registry import handlers
from modelbus_registry.api_guard import RequestGuard
from modelbus_registry.api_models import (
    AliasChangeOut,
    AliasesOut,
    AliasVersionOut,
    FailureOut,
    LineageOut,
    ModelOut,
    PromotionIn,
    RequestedOut,
    RollbackIn,
    TrainingIn,
    VersionOut,
)
from modelbus_registry.artifacts import PackageVault
from modelbus_registry.db import ModelVersion
from modelbus_registry.domain import (
    ALIASES,
    NotFound,
    RequestPromotion,
    RequestRollback,
    RequestTraining,
    unknown_model,
    unknown_version,
)
from modelbus_registry.store import RegistryStore

DEFAULT_MAX_BODY_BYTES = 64 * 1024
ModelName = Annotated[str, Path(description="Registered model name, e.g. credit.")]
VersionNumber = Annotated[int, Path(ge=1, description="Version number, 1 for the first.")]
# Module level: FastAPI resolves these (postponed) annotations in the module's namespace.
bearer = HTTPBearer(auto_error=False, description="The registry's API token.")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def create_app(
    store: RegistryStore,
    vault: PackageVault,
    publisher: Any,
    *,
    api_token: str | None,
    trainable_models: Sequence[str],
    producer: str,
    lifespan: Callable[[FastAPI], Any] | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> FastAPI:
    """The FastAPI app; ``api_token`` None means writes are open (auth off).

    Writes are checked for the token (401), then for size (413), before their body is read.
    """
    app = FastAPI(
        title="modelbus registry",
        version="1",
        description="Registered model versions with full lineage, the champion/canary alias "
        "history, verified artifact downloads, and write endpoints that publish "
        "RollbackRequested / PromotionRequested / TrainingRequested on modelbus.lifecycle "
        "(bearer token required).",
        lifespan=lifespan,
    )
    app.add_middleware(RequestGuard, api_token=api_token, max_body_bytes=max_body_bytes)

    def require_token(credentials: Credentials) -> None:
        if api_token is None:
            return
        if credentials is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "this endpoint needs 'Authorization: Bearer <token>'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not secrets.compare_digest(credentials.credentials.encode(), api_token.encode()):
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "the bearer token is wrong",
                headers={"WWW-Authenticate": "Bearer"},
            )

    @app.exception_handler(NotFound)
    async def _not_found(_request: Request, error: NotFound) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=status.HTTP_404_NOT_FOUND)

    def versions_of(model: str) -> list[ModelVersion]:
        rows = store.versions(model)
        if not rows:
            raise unknown_model(model, store.models())
        return rows

    def one_version(model: str, version: int) -> ModelVersion:
        row = store.version(model, version)
        if row is None:
            raise unknown_version(model, version, [r.version for r in versions_of(model)])
        return row

    def summary(model: str) -> ModelOut:
        rows = versions_of(model)
        aliases = store.aliases(model)
        return ModelOut(
            name=model,
            versions=[row.version for row in rows],
            latest_version=rows[-1].version,
            champion=aliases["champion"],
            canary=aliases["canary"],
        )

    @app.get("/healthz", tags=["ops"], summary="Liveness")
    def healthz() -> dict[str, str]:
        """Answers while the process serves."""
        return {"status": "ok"}

    @app.get("/v1/models", tags=["models"], summary="List models")
    def list_models() -> list[ModelOut]:
        """Every model with a version, its versions and its aliases."""
        return [summary(model) for model in store.models()]

    @app.get("/v1/models/{model}", tags=["models"], summary="One model")
    def get_model(model: ModelName) -> ModelOut:
        """A model's versions and current aliases."""
        return summary(model)

    @app.get("/v1/models/{model}/versions", tags=["versions"], summary="List versions")
    def list_versions(model: ModelName) -> list[VersionOut]:
        """A model's versions, oldest first."""
        return [VersionOut.of(row) for row in versions_of(model)]

    @app.get("/v1/models/{model}/versions/{version}", tags=["versions"], summary="One version")
    def get_version(model: ModelName, version: VersionNumber) -> VersionOut:
        """One version: run, artifact, metrics, parent."""
        return VersionOut.of(one_version(model, version))

    @app.get("/v1/models/{model}/versions/{version}/lineage", tags=["versions"], summary="Lineage")
    def get_lineage(model: ModelName, version: VersionNumber) -> LineageOut:
        """Everything that made a version: data, code, environment, params, parent, cause."""
        return LineageOut.of(one_version(model, version))

    @app.get(
        "/v1/models/{model}/versions/{version}/manifest", tags=["versions"], summary="Manifest"
    )
    def get_manifest(model: ModelName, version: VersionNumber) -> dict[str, Any]:
        """The package's manifest.json as registered."""
        return one_version(model, version).manifest

    @app.get(
        "/v1/models/{model}/versions/{version}/files/{name}",
        tags=["versions"],
        summary="Download a package file",
        response_class=Response,
        responses={200: {"content": {"application/octet-stream": {}}}},
    )
    def download(model: ModelName, version: VersionNumber, name: str) -> Response:
        """One file of the package, served only if its sha256 still matches the manifest."""
        row = one_version(model, version)
        try:
            content = vault.read(row.package_path, name, row.artifact_sha256)
        except FileNotFoundError as error:
            raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from error
        except PackageError as error:
            raise HTTPException(
                status.HTTP_409_CONFLICT, f"refusing to serve a tampered package: {error}"
            ) from error
        return Response(
            content,
            media_type="application/octet-stream",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    @app.get("/v1/models/{model}/aliases", tags=["aliases"], summary="Current aliases")
    def get_aliases(model: ModelName) -> AliasesOut:
        """Which version is champion and which canary now."""
        versions_of(model)
        aliases = store.aliases(model)
        return AliasesOut(model=model, champion=aliases["champion"], canary=aliases["canary"])

    @app.get("/v1/models/{model}/aliases/{alias}", tags=["aliases"], summary="Alias at a time")
    def get_alias(
        model: ModelName,
        alias: str,
        at: Annotated[
            datetime | None,
            Query(
                description="ISO 8601 time with a timezone, e.g. 2026-11-26T08:00:00Z; "
                "now when absent."
            ),
        ] = None,
    ) -> AliasVersionOut:
        """Which version ``alias`` named at time ``at`` ('what was champion at T')."""
        _check_alias(alias)
        versions_of(model)
        if at is not None and at.tzinfo is None:
            raise HTTPException(
                422,
                f"'at' has no timezone: write e.g. {at.isoformat()}Z",
            )
        return AliasVersionOut(
            model=model, alias=alias, at=at, version=store.alias_at(model, alias, at)
        )

    @app.get(
        "/v1/models/{model}/aliases/{alias}/history", tags=["aliases"], summary="Alias history"
    )
    def get_alias_history(model: ModelName, alias: str) -> list[AliasChangeOut]:
        """Every move of an alias, oldest first, with the event that made it."""
        _check_alias(alias)
        versions_of(model)
        return [AliasChangeOut.of(change) for change in store.alias_history(model, alias)]

    @app.get("/v1/models/{model}/failures", tags=["versions"], summary="Refused registrations")
    def get_failures(model: ModelName) -> list[FailureOut]:
        """ModelTrained events the registry refused, with the reasons."""
        return [FailureOut.of(failure) for failure in store.failures(model)]

    async def publish(events: list[Any]) -> RequestedOut:
        for event in events:
            result = publisher.publish(event)
            if inspect.isawaitable(result):
                await result
        first = events[0]
        return RequestedOut(
            event_type=type(first).__name__,
            event_id=first.meta.event_id,
            correlation_id=first.meta.correlation_id,
        )

    @app.post(
        "/v1/models/{model}/rollback",
        tags=["requests"],
        summary="Request a rollback",
        status_code=status.HTTP_202_ACCEPTED,
        dependencies=[Depends(require_token)],
    )
    async def post_rollback(model: ModelName, body: RollbackIn) -> RequestedOut:
        """Publish RollbackRequested; the deployer acts on it."""
        command = RequestRollback(model, body.to_version, body.requested_by, body.reason)
        events = await run_in_threadpool(handlers.request_rollback, command, store, producer)
        return await publish(events)

    @app.post(
        "/v1/models/{model}/promotion",
        tags=["requests"],
        summary="Request a promotion",
        status_code=status.HTTP_202_ACCEPTED,
        dependencies=[Depends(require_token)],
    )
    async def post_promotion(model: ModelName, body: PromotionIn) -> RequestedOut:
        """Publish PromotionRequested; the deployer acts on it."""
        command = RequestPromotion(model, body.version, body.requested_by, body.reason)
        events = await run_in_threadpool(handlers.request_promotion, command, store, producer)
        return await publish(events)

    @app.post(
        "/v1/models/{model}/training",
        tags=["requests"],
        summary="Request training",
        status_code=status.HTTP_202_ACCEPTED,
        dependencies=[Depends(require_token)],
    )
    async def post_training(model: ModelName, body: TrainingIn) -> RequestedOut:
        """Publish TrainingRequested; the trainer acts on it."""
        command = RequestTraining(model, body.requested_by, body.reason, body.seed, body.max_rows)
        events = await run_in_threadpool(
            handlers.request_training, command, store, trainable_models, producer
        )
        return await publish(events)

    return app


def _check_alias(alias: str) -> None:
    if alias not in ALIASES:
        raise NotFound(f"no alias {alias!r}; aliases: {', '.join(ALIASES)}")

"""Plain functions: an event or a command in, the events to publish out."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import structlog
from sqlalchemy.exc import IntegrityError

from modelbus.events import new_meta
from modelbus.events import types as t
from modelbus_registry.artifacts import ArtifactRejected, PackageVault, VerifiedPackage
from modelbus_registry.db import ModelVersion, RegistrationFailure
from modelbus_registry.domain import (
    CHAMPION,
    AnnouncedVersions,
    RequestPromotion,
    RequestRollback,
    RequestTraining,
    alias_moves,
    model_name_problem,
    place_version,
    unknown_model,
    unknown_version,
)
from modelbus_registry.mirror import Mirror
from modelbus_registry.store import RegistryStore

log = structlog.get_logger(__name__)
AliasEvent = t.TrafficShifted | t.ModelPromoted | t.ModelRolledBack


def register_trained_model(
    event: t.ModelTrained,
    store: RegistryStore,
    vault: PackageVault,
    mirror: Mirror,
    producer: str,
    announced: AnnouncedVersions,
) -> list[Any]:
    """ModelTrained -> a new version and ModelRegistered, or RegistrationFailed with the reason.

    A redelivered ModelTrained answers with the very event it got the first time (same
    event id), so an outcome lost to a crash is published again and nothing is duplicated.
    The log is the truth: before writing, the registry catches up with it (``announced``), so
    a database rebuilt or left behind adopts the answer the log already holds instead of
    announcing it again, and never issues a version number the log already has.
    """
    done = store.version_for_trained_event(event.meta.event_id)
    if done is not None:
        mirror_version(done, store, mirror)
        return [registered_event(done)]
    refused = store.failure_for_trained_event(event.meta.event_id)
    if refused is not None:
        return [failed_event(refused)]
    try:
        package = _admit(event, vault)
    except ArtifactRejected as error:
        log.warning("registration refused", model=event.model, reason=str(error))
        return [failed_event(_record_failure(event, str(error), store, producer))]
    announced.catch_up()
    adopt_announced(event.model, store, vault, mirror, announced, skip=event.meta.event_id)
    logged = announced.answer_for(event.meta.event_id)
    try:
        with store.unit_of_work() as work:
            existing = work.versions(event.model)
            version, parent = place_version(
                existing,
                work.aliases(event.model)[CHAMPION],
                event.parent_version,
                announced.latest(event.model),
            )
            if logged is not None:  # adopt exactly what the log announced
                version, parent, meta = logged.version, logged.parent_version, logged.meta
            else:
                meta = new_meta(producer, cause=event)
            row = work.add_version(version_row(event, package, version, parent, meta))
    except IntegrityError:
        # A concurrent delivery of the same event won the race: answer as it did.
        row_or_none = store.version_for_trained_event(event.meta.event_id)
        if row_or_none is None:
            raise
        row = row_or_none
    log.info("registered", model=row.model, version=row.version, adopted=logged is not None)
    mirror_version(row, store, mirror)
    return [] if logged is not None else [registered_event(row)]


def adopt_announced(
    model: str,
    store: RegistryStore,
    vault: PackageVault,
    mirror: Mirror,
    announced: AnnouncedVersions,
    *,
    skip: str | None = None,
) -> list[int]:
    """Add the versions of ``model`` the log announced but the database lacks; nothing is published.

    Each keeps the number, parent and event the log holds. A package that no longer verifies
    is left out (and logged); its number stays taken, since ``announced`` remembers it.
    """
    held = {row.version for row in store.versions(model)}
    adopted = []
    for trained, answer in announced.not_held(model, held):
        if trained.meta.event_id == skip:
            continue
        try:
            package = _admit(trained, vault)
        except ArtifactRejected as error:
            log.warning("cannot adopt a logged version", model=model, version=answer.version,
                        reason=str(error))  # fmt: skip
            continue
        try:
            with store.unit_of_work() as work:
                work.add_version(
                    version_row(
                        trained, package, answer.version, answer.parent_version, answer.meta
                    )
                )
        except IntegrityError:
            continue  # adopted meanwhile by another delivery
        adopted.append(answer.version)
        row = store.version(model, answer.version)
        if row is not None:
            mirror_version(row, store, mirror)
    if adopted:
        log.info("adopted versions from the log", model=model, versions=adopted)
    return adopted


def adopt_log(
    store: RegistryStore, vault: PackageVault, mirror: Mirror, announced: AnnouncedVersions
) -> None:
    """Bring the database up to what the log announced, for every model (run at start)."""
    announced.catch_up()
    for model in announced.models():
        adopt_announced(model, store, vault, mirror, announced)


def version_row(
    event: t.ModelTrained,
    package: VerifiedPackage,
    version: int,
    parent: int | None,
    meta: t.EventMeta,
) -> ModelVersion:
    """The database row of a version, announced with ``meta``."""
    return ModelVersion(
        model=event.model,
        version=version,
        run_id=event.run_id,
        job_id=event.job_id,
        artifact_uri=event.artifact_uri,
        artifact_sha256=event.artifact_sha256,
        package_path=str(package.path),
        contract_fingerprint=event.contract_fingerprint,
        metrics=dict(event.metrics),
        params=dict(event.params),
        data_lineage=event.data.to_avro(),
        code=event.code.to_avro(),
        environment=event.environment.to_avro(),
        manifest=package.manifest,
        parent_version=parent,
        trained_event_id=event.meta.event_id,
        correlation_id=meta.correlation_id,
        registered_event_id=meta.event_id,
        registered_at=meta.occurred_at,
        producer=meta.producer,
    )


def follow_aliases(event: AliasEvent, store: RegistryStore, mirror: Mirror) -> list[Any]:
    """TrafficShifted / ModelPromoted / ModelRolledBack -> champion and canary history, mirrored."""
    event_type = type(event).__name__
    try:
        with store.unit_of_work() as work:
            if not work.first_time(event.meta.event_id, event_type, event.model):
                return []
            moves = alias_moves(event, work.aliases(event.model))
            work.move_aliases(
                event.model,
                moves,
                changed_at=event.meta.occurred_at,
                event_id=event.meta.event_id,
                event_type=event_type,
                reason=event.reason,
            )
    except IntegrityError:
        return []  # another writer applied the same event first
    for move in moves:
        row = store.version(event.model, move.version) if move.version is not None else None
        if move.version is not None and (row is None or row.mlflow_version is None):
            log.warning("alias names an unmirrored version", model=event.model, move=move)
            continue
        try:
            mirror.move_alias(event.model, move.alias, row.mlflow_version if row else None)
        except Exception as error:  # the database is the truth; resync_mirror repairs MLflow
            log.warning("mirroring alias failed", model=event.model, move=move, error=str(error))
    return []


def mirror_version(row: ModelVersion, store: RegistryStore, mirror: Mirror) -> None:
    """Copy a version into the mirror once; a failure is logged and retried on resync."""
    if row.mlflow_version is not None:
        return
    try:
        mirrored = mirror.mirror_version(row)
    except Exception as error:  # the database is the truth; resync_mirror repairs MLflow
        log.warning(
            "mirroring version failed", model=row.model, version=row.version, error=str(error)
        )
        return
    if mirrored is not None:
        store.set_mlflow_version(row.model, row.version, mirrored)
        row.mlflow_version = mirrored


def resync_mirror(store: RegistryStore, mirror: Mirror) -> None:
    """Mirror every version and current alias the mirror missed (run at start)."""
    for model in store.models():
        for row in store.versions(model):
            mirror_version(row, store, mirror)
        for alias, version in store.aliases(model).items():
            target = store.version(model, version) if version is not None else None
            if version is None or (target is not None and target.mlflow_version is not None):
                try:
                    mirror.move_alias(model, alias, target.mlflow_version if target else None)
                except Exception as error:
                    log.warning(
                        "mirroring alias failed", model=model, alias=alias, error=str(error)
                    )


def request_rollback(
    command: RequestRollback, store: RegistryStore, producer: str
) -> list[t.RollbackRequested]:
    """An operator's rollback, for a model (and target version) the registry knows."""
    versions = _versions_of(command.model, store)
    if command.to_version is not None and command.to_version not in versions:
        raise unknown_version(command.model, command.to_version, versions)
    return [
        t.RollbackRequested(
            meta=new_meta(producer),
            model=command.model,
            to_version=command.to_version,
            requested_by=command.requested_by,
            reason=command.reason,
        )
    ]


def request_promotion(
    command: RequestPromotion, store: RegistryStore, producer: str
) -> list[t.PromotionRequested]:
    """An operator's promotion of a version the registry holds."""
    versions = _versions_of(command.model, store)
    if command.version not in versions:
        raise unknown_version(command.model, command.version, versions)
    return [
        t.PromotionRequested(
            meta=new_meta(producer),
            model=command.model,
            version=command.version,
            requested_by=command.requested_by,
            reason=command.reason,
        )
    ]


def request_training(
    command: RequestTraining, store: RegistryStore, trainable_models: Sequence[str], producer: str
) -> list[t.TrainingRequested]:
    """An operator's training request, for a model with a data contract or a version."""
    known = sorted({*trainable_models, *store.models()})
    if command.model not in known:
        raise unknown_model(command.model, known)
    return [
        t.TrainingRequested(
            meta=new_meta(producer),
            model=command.model,
            reason=command.reason,
            requested_by=command.requested_by,
            seed=command.seed,
            max_rows=command.max_rows,
        )
    ]


def registered_event(row: ModelVersion) -> t.ModelRegistered:
    """The ModelRegistered a version was announced with, rebuilt identically from its row."""
    return t.ModelRegistered(
        meta=t.EventMeta(
            event_id=row.registered_event_id,
            occurred_at=row.registered_at,
            producer=row.producer,
            correlation_id=row.correlation_id,
            causation_id=row.trained_event_id,
        ),
        model=row.model,
        version=row.version,
        run_id=row.run_id,
        artifact_uri=row.artifact_uri,
        artifact_sha256=row.artifact_sha256,
        metrics=dict(row.metrics),
        parent_version=row.parent_version,
        description=f"run {row.run_id}, job {row.job_id}",
    )


def failed_event(failure: RegistrationFailure) -> t.RegistrationFailed:
    """The RegistrationFailed a refusal was announced with, rebuilt identically."""
    return t.RegistrationFailed(
        meta=t.EventMeta(
            event_id=failure.failed_event_id,
            occurred_at=failure.failed_at,
            producer=failure.producer,
            correlation_id=failure.correlation_id,
            causation_id=failure.trained_event_id,
        ),
        model=failure.model,
        run_id=failure.run_id,
        artifact_uri=failure.artifact_uri,
        reason=failure.reason,
    )


def _admit(event: t.ModelTrained, vault: PackageVault) -> VerifiedPackage:
    problem = model_name_problem(event.model)
    if problem:
        raise ArtifactRejected(problem)
    return vault.admit(
        event.model, event.artifact_uri, event.artifact_sha256, event.contract_fingerprint
    )


def _record_failure(
    event: t.ModelTrained, reason: str, store: RegistryStore, producer: str
) -> RegistrationFailure:
    meta = new_meta(producer, cause=event)
    try:
        return store.add_failure(
            RegistrationFailure(
                model=event.model,
                run_id=event.run_id,
                artifact_uri=event.artifact_uri,
                reason=reason,
                trained_event_id=event.meta.event_id,
                correlation_id=meta.correlation_id,
                failed_event_id=meta.event_id,
                failed_at=meta.occurred_at,
                producer=producer,
            )
        )
    except IntegrityError:
        existing = store.failure_for_trained_event(event.meta.event_id)
        if existing is None:
            raise
        return existing


def _versions_of(model: str, store: RegistryStore) -> list[int]:
    versions = [row.version for row in store.versions(model)]
    if not versions:
        raise unknown_model(model, store.models())
    return versions


EVENT_HANDLERS: dict[type, list[Callable[..., list[Any]]]] = {
    t.ModelTrained: [register_trained_model],
    t.TrafficShifted: [follow_aliases],
    t.ModelPromoted: [follow_aliases],
    t.ModelRolledBack: [follow_aliases],
}

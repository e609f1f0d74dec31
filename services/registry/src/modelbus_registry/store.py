"""Reading and writing the registry database; every write is one transaction."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from modelbus_registry.db import AliasChange, ModelVersion, ProcessedEvent, RegistrationFailure
from modelbus_registry.domain import ALIASES, AliasMove


class RegistryStore:
    """The registry's tables behind plain methods; rows come back detached and read-only."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    # versions

    def version_for_trained_event(self, trained_event_id: str) -> ModelVersion | None:
        """The version a ModelTrained already created, if any."""
        with self._session() as session:
            query = select(ModelVersion).where(ModelVersion.trained_event_id == trained_event_id)
            return session.exec(query).first()

    def failure_for_trained_event(self, trained_event_id: str) -> RegistrationFailure | None:
        """The refusal a ModelTrained already got, if any."""
        with self._session() as session:
            query = select(RegistrationFailure).where(
                RegistrationFailure.trained_event_id == trained_event_id
            )
            return session.exec(query).first()

    @contextmanager
    def unit_of_work(self) -> Iterator[UnitOfWork]:
        """One transaction: read what a decision needs, then write it, all or nothing.

        The unique constraints make a concurrent writer fail rather than duplicate; the
        caller sees IntegrityError when the block exits.
        """
        with self._session() as session, session.begin():
            yield UnitOfWork(session)

    def add_failure(self, failure: RegistrationFailure) -> RegistrationFailure:
        """Record a refusal."""
        with self._session() as session, session.begin():
            session.add(failure)
        return failure

    def set_mlflow_version(self, model: str, version: int, mlflow_version: int) -> None:
        """Remember which MLflow model version mirrors ours."""
        with self._session() as session, session.begin():
            row = session.exec(
                select(ModelVersion).where(
                    ModelVersion.model == model, ModelVersion.version == version
                )
            ).one()
            row.mlflow_version = mlflow_version
            session.add(row)

    def models(self) -> list[str]:
        """Names of every model with at least one version."""
        with self._session() as session:
            return list(
                session.exec(select(ModelVersion.model).distinct().order_by(ModelVersion.model))
            )

    def versions(self, model: str) -> list[ModelVersion]:
        """A model's versions, oldest first."""
        with self._session() as session:
            query = (
                select(ModelVersion)
                .where(ModelVersion.model == model)
                .order_by(col(ModelVersion.version))
            )
            return list(session.exec(query))

    def version(self, model: str, version: int) -> ModelVersion | None:
        """One version, or None."""
        with self._session() as session:
            query = select(ModelVersion).where(
                ModelVersion.model == model, ModelVersion.version == version
            )
            return session.exec(query).first()

    def failures(self, model: str) -> list[RegistrationFailure]:
        """A model's refused registrations, oldest first."""
        with self._session() as session:
            query = (
                select(RegistrationFailure)
                .where(RegistrationFailure.model == model)
                .order_by(col(RegistrationFailure.id))
            )
            return list(session.exec(query))

    # aliases

    def aliases(self, model: str) -> dict[str, int | None]:
        """Current version of each alias (None: not set)."""
        return {alias: self.alias_at(model, alias) for alias in ALIASES}

    def alias_at(self, model: str, alias: str, at: datetime | None = None) -> int | None:
        """The version ``alias`` named at time ``at`` (now when None)."""
        with self._session() as session:
            return _alias_at(session, model, alias, at)

    def alias_history(self, model: str, alias: str | None = None) -> list[AliasChange]:
        """Every move of a model's aliases (or of one), oldest first."""
        with self._session() as session:
            query = select(AliasChange).where(AliasChange.model == model)
            if alias is not None:
                query = query.where(AliasChange.alias == alias)
            query = query.order_by(col(AliasChange.changed_at), col(AliasChange.id))
            return list(session.exec(query))


class UnitOfWork:
    """The reads and writes of one registry transaction (see RegistryStore.unit_of_work)."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def versions(self, model: str) -> set[int]:
        """Every version number ``model`` has."""
        query = select(ModelVersion.version).where(ModelVersion.model == model)
        return set(self._session.exec(query))

    def aliases(self, model: str) -> dict[str, int | None]:
        """Current version of each alias of ``model`` (None: not set)."""
        return {alias: _alias_at(self._session, model, alias, None) for alias in ALIASES}

    def add_version(self, row: ModelVersion) -> ModelVersion:
        """Insert a version."""
        self._session.add(row)
        return row

    def first_time(self, event_id: str, event_type: str, model: str) -> bool:
        """Mark an event processed; False when it already was."""
        if self._session.get(ProcessedEvent, event_id) is not None:
            return False
        self._session.add(ProcessedEvent(event_id=event_id, event_type=event_type, model=model))
        return True

    def move_aliases(
        self,
        model: str,
        moves: Sequence[AliasMove],
        *,
        changed_at: datetime,
        event_id: str,
        event_type: str,
        reason: str,
    ) -> None:
        """Record each move of an alias, caused by one event."""
        for move in moves:
            self._session.add(
                AliasChange(
                    model=model,
                    alias=move.alias,
                    version=move.version,
                    changed_at=changed_at,
                    event_id=event_id,
                    event_type=event_type,
                    reason=reason,
                )
            )


def _alias_at(session: Session, model: str, alias: str, at: datetime | None) -> int | None:
    query = select(AliasChange).where(AliasChange.model == model, AliasChange.alias == alias)
    if at is not None:
        query = query.where(AliasChange.changed_at <= at)
    query = query.order_by(col(AliasChange.changed_at).desc(), col(AliasChange.id).desc())
    change = session.exec(query).first()
    return change.version if change is not None else None

"""Mirror versions and aliases into the MLflow Model Registry, so the MLflow UI shows them."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

import structlog

from modelbus_registry.db import ModelVersion

log = structlog.get_logger(__name__)
VERSION_TAG = "modelbus.version"


class Mirror(Protocol):
    """Where versions and aliases are copied; the registry database stays the source of truth."""

    def mirror_version(self, row: ModelVersion) -> int | None: ...

    def move_alias(self, model: str, alias: str, mirrored_version: int | None) -> None: ...


class NoMirror:
    """Mirroring turned off."""

    def mirror_version(self, row: ModelVersion) -> int | None:
        """Nothing mirrored."""
        return None

    def move_alias(self, model: str, alias: str, mirrored_version: int | None) -> None:
        """Nothing mirrored."""


class MlflowMirror:
    """The MLflow Model Registry at ``tracking_uri``; every call is idempotent."""

    def __init__(self, tracking_uri: str) -> None:
        from mlflow import MlflowClient

        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    def mirror_version(self, row: ModelVersion) -> int | None:
        """The MLflow version holding ``row``, created (with lineage tags) when missing."""
        from mlflow.exceptions import MlflowException

        try:
            self.client.create_registered_model(
                row.model, description="Versions registered by modelbus; lineage in the tags."
            )
        except MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        for existing in self.client.search_model_versions(f"name='{row.model}'"):
            if existing.tags.get(VERSION_TAG) == str(row.version):
                return int(existing.version)
        created = self.client.create_model_version(
            row.model,
            source=self._source(row),
            run_id=row.run_id if self._run_exists(row.run_id) else None,
            tags=_lineage_tags(row),
            description=f"modelbus version {row.version} of {row.model}",
        )
        if self._run_exists(row.run_id):
            self.client.set_tag(row.run_id, "modelbus.registered_version", str(row.version))
        return int(created.version)

    def move_alias(self, model: str, alias: str, mirrored_version: int | None) -> None:
        """Point ``alias`` at an MLflow version, or remove it."""
        from mlflow.exceptions import MlflowException

        if mirrored_version is not None:
            self.client.set_registered_model_alias(model, alias, str(mirrored_version))
            return
        try:
            self.client.delete_registered_model_alias(model, alias)
        except MlflowException as error:
            if error.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise

    def alias_version(self, model: str, alias: str) -> int | None:
        """The MLflow version ``alias`` points at, or None."""
        from mlflow.exceptions import MlflowException

        try:
            return int(self.client.get_model_version_by_alias(model, alias).version)
        except MlflowException:
            return None

    def _run_exists(self, run_id: str) -> bool:
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_run(run_id)
        except MlflowException:
            return False
        return True

    @staticmethod
    def _source(row: ModelVersion) -> str:
        scheme = urlparse(row.artifact_uri).scheme
        if scheme not in ("", "file") and len(scheme) > 1:
            return row.artifact_uri
        return Path(row.package_path).resolve().as_uri()


def _lineage_tags(row: ModelVersion) -> dict[str, Any]:
    code = row.code or {}
    return {
        VERSION_TAG: str(row.version),
        "modelbus.artifact_sha256": row.artifact_sha256,
        "modelbus.parent_version": "" if row.parent_version is None else str(row.parent_version),
        "modelbus.trained_event_id": row.trained_event_id,
        "modelbus.correlation_id": row.correlation_id,
        "modelbus.snapshot_sha256": str(row.data_lineage.get("snapshot_sha256", "")),
        "modelbus.git_sha": str(code.get("git_sha", "")),
        "modelbus.git_dirty": str(code.get("dirty", "")),
    }

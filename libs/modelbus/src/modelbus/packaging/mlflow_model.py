"""Log a package as an MLflow model whose pyfunc flavor loads through modelbus (no pickle)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from modelbus.packaging.package import read_manifest

LOADER_MODULE = "modelbus.packaging.mlflow_loader"
_AVRO_TO_MLFLOW = {
    "int": "long",
    "long": "long",
    "float": "double",
    "double": "double",
    "string": "string",
    "boolean": "boolean",
}


@dataclass(frozen=True, slots=True)
class LoggedPackage:
    """Where MLflow put it: the model URI (for ``mlflow models serve``) and the package URI."""

    model_uri: str
    package_uri: str
    model_id: str | None


def contract_signature(contract: Mapping[str, Any], n_classes: int) -> Any:
    """An MLflow ModelSignature: contract columns in, (n, n_classes) float32 probabilities out."""
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema, TensorSpec

    columns: list[ColSpec | TensorSpec] = []
    for spec in contract["fields"]:
        avro_type = spec["type"]
        base = (
            next(t for t in avro_type if t != "null") if isinstance(avro_type, list) else avro_type
        )
        columns.append(
            ColSpec(
                _AVRO_TO_MLFLOW.get(base, "string"),
                spec["name"],
                required=not isinstance(avro_type, list),
            )
        )
    return ModelSignature(
        inputs=Schema(columns),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, n_classes))]),
    )


def _requirements() -> list[str]:
    pinned = []
    for name in ("torch", "numpy", "safetensors", "pandas"):
        try:
            pinned.append(f"{name}=={metadata.version(name).split('+')[0]}")
        except metadata.PackageNotFoundError:
            continue
    return pinned


def log_package(
    directory: str | Path, contract: Mapping[str, Any], *, name: str = "model"
) -> LoggedPackage:
    """Log ``directory`` under the active MLflow run as a pyfunc model named ``name``."""
    import mlflow

    directory = Path(directory)
    manifest = read_manifest(directory)
    info = mlflow.pyfunc.log_model(
        name=name,
        loader_module=LOADER_MODULE,
        data_path=str(directory),
        signature=contract_signature(contract, len(manifest.classes)),
        pip_requirements=_requirements(),
        metadata={"modelbus_runtime": manifest.runtime, "modelbus_model": manifest.name},
    )
    artifact_root = info.artifact_path if "://" in str(info.artifact_path) else None
    if artifact_root is None:
        model_id = getattr(info, "model_id", None)
        logged = mlflow.get_logged_model(model_id) if model_id else None
        artifact_root = logged.artifact_location if logged else info.model_uri
    package_uri = f"{str(artifact_root).rstrip('/')}/data/{directory.name}"
    return LoggedPackage(
        model_uri=info.model_uri, package_uri=package_uri, model_id=getattr(info, "model_id", None)
    )

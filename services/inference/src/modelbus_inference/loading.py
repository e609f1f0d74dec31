"""Loading a registered version for serving: fetch, verify, check the environment, warm up."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from modelbus.packaging import LoadedModel
from modelbus_inference.domain import Registration

WARMUP_ROWS = 8


class LoadFailed(Exception):
    """A version could not be served; the message is the reason ModelLoadFailed carries."""


class ServedModel(Protocol):
    """What the prediction path needs of a loaded version."""

    version: int
    environment_check: str
    load_ms: float

    def predict_rows(self, rows: list[dict[str, Any]]) -> np.ndarray: ...


@dataclass(slots=True)
class ServedPackage:
    """The one served-model class: a registered version's package, verified, loaded and warmed.

    The package (``modelbus.packaging.LoadedModel``) owns preprocessing and the runtime plugin;
    this adds only what serving needs to say about it: which version, how it was checked, and
    how long it took to load.
    """

    version: int
    package: LoadedModel
    environment_check: str
    load_ms: float

    def predict_rows(self, rows: list[dict[str, Any]]) -> np.ndarray:
        """Class probabilities, one row per request."""
        return np.asarray(self.package.predict_rows(rows))


def warmup_rows(contract: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows that fit the contract, for a first forward pass before a model takes traffic."""
    neutral = {"double": 0.0, "float": 0.0, "int": 0, "long": 0, "string": "", "boolean": False}
    row = {}
    for spec in contract["fields"]:
        kind = spec["type"]
        kind = next(k for k in kind if k != "null") if isinstance(kind, list) else kind
        row[spec["name"]] = neutral.get(kind if isinstance(kind, str) else kind["type"])
    return [dict(row) for _ in range(WARMUP_ROWS)]


def load_packaged_model(
    registration: Registration,
    *,
    policy: str,
    contract: dict[str, Any],
    threads: int | None = None,
) -> ServedPackage:
    """Fetch, verify (sha256 of manifest and every file), check environment, load and warm up."""
    from modelbus import packaging

    started = time.perf_counter()
    try:
        directory = packaging.resolve_package(registration.artifact_uri)
    except Exception as error:
        raise LoadFailed(
            f"cannot fetch {registration.artifact_uri}: {type(error).__name__}: {error}"
        ) from error
    try:
        loaded = packaging.load_package(
            directory,
            policy=policy,  # type: ignore[arg-type]
            expected_sha256=registration.artifact_sha256 or None,
            threads=threads,
        )
    except (packaging.PackageError, packaging.EnvironmentMismatch) as error:
        raise LoadFailed(str(error)) from error
    except Exception as error:
        raise LoadFailed(f"{type(error).__name__}: {error}") from error
    try:
        scores = np.asarray(loaded.predict_rows(warmup_rows(contract)))
    except Exception as error:
        raise LoadFailed(f"warm-up failed: {type(error).__name__}: {error}") from error
    if scores.ndim != 2 or scores.shape[0] != WARMUP_ROWS or not np.isfinite(scores).all():
        raise LoadFailed(f"warm-up gave scores of shape {scores.shape} with non-finite values")
    return ServedPackage(
        version=registration.version,
        package=loaded,
        environment_check=str(loaded.environment_verdict),
        load_ms=(time.perf_counter() - started) * 1000,
    )

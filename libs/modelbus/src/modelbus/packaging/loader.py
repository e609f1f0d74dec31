"""Load a verified package for serving: sha256, environment, runtime, preprocessing."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from modelbus.packaging.environment import Policy, Verdict, check_environment
from modelbus.packaging.package import (
    MANIFEST,
    PREPROCESSING,
    Manifest,
    PackageError,
    PackageIntegrityError,
    PackageSignatureError,
    package_sha256,
    verify_package,
)
from modelbus.packaging.preprocessing import Preprocessor
from modelbus.packaging.runtime import Runtime, runtime_for
from modelbus.trust import KeysMissing, ManifestSignatureError, TrustedKeys, load_trusted
from modelbus.trust.manifests import verify_manifest


@dataclass
class LoadedModel:
    """A package ready to predict: the same preprocessing the trainer fitted, then the runtime."""

    directory: Path
    manifest: Manifest
    preprocessor: Preprocessor
    runtime: Runtime
    environment_verdict: Verdict
    sha256: str

    def predict_rows(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Contract rows -> (n, n_classes) probabilities."""
        return self.runtime.predict(self.preprocessor.transform(rows))

    def predict_matrix(self, x: np.ndarray) -> np.ndarray:
        """Already-preprocessed float32 rows -> (n, n_classes) probabilities."""
        return self.runtime.predict(x)

    def unload(self) -> None:
        """Release the runtime."""
        self.runtime.unload()


def resolve_package(uri: str | Path) -> Path:
    """A local directory for a package URI: a path, ``file://``, or any MLflow artifact URI."""
    text = str(uri)
    parsed = urlparse(text)
    if parsed.scheme in ("", "file") or len(parsed.scheme) == 1:  # 1: a Windows drive letter
        return Path(parsed.path if parsed.scheme == "file" else text)
    import mlflow

    return Path(mlflow.artifacts.download_artifacts(artifact_uri=text))


def check_manifest_signature(directory: Path, trusted: TrustedKeys | None = None) -> str:
    """The sha256 of the manifest bytes a trusted trainer signed; PackageSignatureError if none."""
    path = directory / MANIFEST
    if not path.is_file():
        raise PackageIntegrityError(f"{MANIFEST} missing in {directory}")
    manifest = path.read_bytes()
    try:
        verify_manifest(directory, manifest, trusted or load_trusted())
    except (ManifestSignatureError, KeysMissing) as error:
        raise PackageSignatureError(f"refusing the package in {directory}: {error}") from error
    return hashlib.sha256(manifest).hexdigest()


def load_package(
    directory: str | Path,
    *,
    policy: Policy = "compatible",
    expected_sha256: str | None = None,
    threads: int | None = None,
    trusted: TrustedKeys | None = None,
) -> LoadedModel:
    """Check the trainer's signature, verify every file, check the environment, and load.

    ``trusted`` defaults to the keys MODELBUS_TRUSTED_KEYS names. Raises PackageSignatureError
    (manifest not signed by a trusted trainer key), PackageIntegrityError (bad or missing
    file), EnvironmentMismatch (policy refused) or PackageError (unknown runtime, unreadable).
    """
    directory = Path(directory)
    signed = check_manifest_signature(directory, trusted)
    # The files are checked against the very manifest bytes whose signature was checked.
    manifest = verify_package(directory, expected_sha256=expected_sha256 or signed)
    verdict = check_environment(manifest.environment, policy)
    preprocessor = Preprocessor.from_json((directory / PREPROCESSING).read_text())
    factory = runtime_for(manifest.runtime)
    runtime = factory(directory, manifest, threads=threads)
    runtime.load()
    if preprocessor.n_outputs <= 0:
        raise PackageError(f"{PREPROCESSING} emits no columns")
    return LoadedModel(
        directory=directory,
        manifest=manifest,
        preprocessor=preprocessor,
        runtime=runtime,
        environment_verdict=verdict,
        sha256=package_sha256(directory),
    )

"""The model package on disk: write it, verify it, and its manifest."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save_file

from modelbus.events.schemas import fingerprint_of, full_name
from modelbus.events.types import CodeVersion, DataLineage, Environment
from modelbus.packaging.environment import capture_environment
from modelbus.packaging.preprocessing import Preprocessor, feature_specs
from modelbus.trust.manifests import sign_manifest
from modelbus.trust.signing import Signer

MANIFEST = "manifest.json"
WEIGHTS = "weights.safetensors"
ARCHITECTURE = "architecture.json"
PREPROCESSING = "preprocessing.json"
PROFILE = "profile.json"
PACKAGE_FORMAT = 1


class PackageError(RuntimeError):
    """A model package that cannot be used; the message says what to do."""


class PackageIntegrityError(PackageError):
    """A package file is missing or its sha256 differs from the manifest's."""


class PackageSignatureError(PackageIntegrityError):
    """The manifest is not signed by a trusted trainer key (missing, wrong role, or altered)."""


@dataclass(frozen=True, slots=True)
class Manifest:
    """``manifest.json``: what the model is, what it was trained on and with, and its files."""

    name: str
    runtime: str
    contract_name: str
    contract_fingerprint: str
    features: list[dict[str, str]]
    classes: list[int]
    metrics: dict[str, float]
    params: dict[str, str]
    environment: Environment
    files: dict[str, str]
    lineage: DataLineage | None = None
    code: CodeVersion | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data."""
        return {
            "format": PACKAGE_FORMAT,
            "name": self.name,
            "runtime": self.runtime,
            "contract": {"name": self.contract_name, "fingerprint": self.contract_fingerprint},
            "features": self.features,
            "classes": self.classes,
            "metrics": self.metrics,
            "params": self.params,
            "environment": self.environment.to_avro(),
            "lineage": self.lineage.to_avro() if self.lineage else None,
            "code": self.code.to_avro() if self.code else None,
            "files": self.files,
            "extra": self.extra,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Manifest:
        """Inverse of ``to_dict``."""
        if data.get("format") != PACKAGE_FORMAT:
            raise PackageError(
                f"package format {data.get('format')!r} is not {PACKAGE_FORMAT}; "
                "retrain the model with this modelbus version"
            )
        return cls(
            name=data["name"],
            runtime=data["runtime"],
            contract_name=data["contract"]["name"],
            contract_fingerprint=data["contract"]["fingerprint"],
            features=list(data["features"]),
            classes=list(data["classes"]),
            metrics=dict(data["metrics"]),
            params=dict(data["params"]),
            environment=Environment.from_avro(data["environment"]),
            lineage=DataLineage.from_avro(data["lineage"]) if data.get("lineage") else None,
            code=CodeVersion.from_avro(data["code"]) if data.get("code") else None,
            files=dict(data["files"]),
            extra=dict(data.get("extra") or {}),
        )


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _dump(data: Any) -> bytes:
    # Sorted keys and no timestamps: the same model yields the same bytes and sha256.
    return (json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n").encode()


def write_package(
    directory: str | Path,
    *,
    name: str,
    contract: Mapping[str, Any],
    preprocessor: Preprocessor,
    runtime: str,
    weights: Mapping[str, np.ndarray],
    architecture: Mapping[str, Any],
    profile: Mapping[str, Any],
    classes: list[int] | None = None,
    metrics: Mapping[str, float] | None = None,
    params: Mapping[str, str] | None = None,
    lineage: DataLineage | None = None,
    code: CodeVersion | None = None,
    environment: Environment | None = None,
    extra: Mapping[str, Any] | None = None,
    signer: Signer | None = None,
) -> Manifest:
    """Write a complete package into ``directory`` (created; must be absent or empty).

    With a ``signer`` (the trainer's), ``manifest.sig`` vouches for the manifest's bytes.
    Files land in a sibling temporary folder first and are renamed into place, so a reader
    never sees half a package.
    """
    target = Path(directory)
    if target.exists() and any(target.iterdir()):
        raise PackageError(f"{target} already holds files; packages are immutable")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        save_file(
            {key: np.ascontiguousarray(value) for key, value in weights.items()},
            str(staging / WEIGHTS),
        )
        (staging / ARCHITECTURE).write_bytes(_dump(dict(architecture)))
        (staging / PREPROCESSING).write_bytes(preprocessor.to_json().encode() + b"\n")
        (staging / PROFILE).write_bytes(_dump(dict(profile)))
        files = {
            file: sha256_of(staging / file)
            for file in (ARCHITECTURE, PREPROCESSING, PROFILE, WEIGHTS)
        }
        manifest = Manifest(
            name=name,
            runtime=runtime,
            contract_name=full_name(dict(contract)),
            contract_fingerprint=fingerprint_of(dict(contract)).hex(),
            features=[
                {"name": spec.name, "kind": spec.kind, "type": spec.avro_type}
                for spec in feature_specs(contract)
            ],
            classes=list(classes if classes is not None else [0, 1]),
            metrics={key: float(value) for key, value in (metrics or {}).items()},
            params={key: str(value) for key, value in (params or {}).items()},
            environment=environment or capture_environment(),
            lineage=lineage,
            code=code,
            files=files,
            extra=dict(extra or {}),
        )
        (staging / MANIFEST).write_bytes(_dump(manifest.to_dict()))
        if signer is not None:
            sign_manifest(staging, signer)
        if target.exists():
            target.rmdir()
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def read_manifest(directory: str | Path) -> Manifest:
    """The manifest, unverified (use ``verify_package`` before trusting any file)."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise PackageIntegrityError(f"{MANIFEST} missing in {directory}")
    try:
        return Manifest.from_dict(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError) as error:
        raise PackageIntegrityError(
            f"{MANIFEST} in {directory} is not a manifest: {error}"
        ) from error


def verify_package(directory: str | Path, *, expected_sha256: str | None = None) -> Manifest:
    """Check every file's sha256 against the manifest (and the manifest's own, if given)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise PackageIntegrityError(f"package directory {directory} does not exist")
    if expected_sha256 is not None:
        if not (directory / MANIFEST).is_file():
            raise PackageIntegrityError(f"{MANIFEST} missing in {directory}")
        actual = package_sha256(directory)
        if actual != expected_sha256:
            raise PackageIntegrityError(
                f"sha256 mismatch in {MANIFEST}: expected {expected_sha256}, found {actual}"
            )
    manifest = read_manifest(directory)
    for required in (WEIGHTS, ARCHITECTURE, PREPROCESSING, PROFILE):
        if required not in manifest.files:
            raise PackageIntegrityError(f"{MANIFEST} lists no sha256 for {required}")
    for file, expected in sorted(manifest.files.items()):
        path = directory / file
        if not path.is_file():
            raise PackageIntegrityError(f"{file} missing in {directory}")
        actual = sha256_of(path)
        if actual != expected:
            raise PackageIntegrityError(
                f"sha256 mismatch in {file}: manifest says {expected}, file has {actual}"
            )
    return manifest


def package_sha256(directory: str | Path) -> str:
    """sha256 of manifest.json, which hashes every other file: the package's identity."""
    return sha256_of(Path(directory) / MANIFEST)


def weights_sha256(directory: str | Path) -> str:
    """sha256 of weights.safetensors."""
    return sha256_of(Path(directory) / WEIGHTS)

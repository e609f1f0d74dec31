"""Fetch a model package, verify it, and keep a verified copy addressed by its sha256."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

from modelbus.packaging import (
    MANIFEST,
    PackageError,
    PackageIntegrityError,
    read_manifest,
    verify_package,
)

LOCAL_SCHEMES = ("", "file")


class ArtifactRejected(Exception):
    """The package cannot be registered; the message is the reason a person reads."""


@dataclass(frozen=True, slots=True)
class VerifiedPackage:
    """A package the registry checked, kept at ``path`` for as long as the registry lives."""

    path: Path
    sha256: str
    manifest: dict[str, Any]


class PackageVault:
    """Verified copies of packages under ``root/<model>/<sha256>``: immutable, served by the API."""

    def __init__(
        self,
        root: Path,
        *,
        allowed_roots: Sequence[str | Path],
        mlflow_tracking_uri: str | None = None,
    ) -> None:
        self.root = root
        self.allowed_roots = [str(r) for r in allowed_roots]
        self.mlflow_tracking_uri = mlflow_tracking_uri

    def admit(
        self, model: str, artifact_uri: str, expected_sha256: str, contract_fingerprint: str
    ) -> VerifiedPackage:
        """Fetch ``artifact_uri``, check it is the package ``expected_sha256`` names, keep it.

        Raises ArtifactRejected with the reason when it is missing, tampered or not a package.
        """
        source = self._allowed_source(artifact_uri)
        self.root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.root))
        try:
            copy = staging / "package"
            self._fetch(artifact_uri, source, copy)
            # Verify the copy, not the source: what is kept is exactly what was checked.
            try:
                manifest = verify_package(copy, expected_sha256=expected_sha256)
            except PackageError as error:
                raise ArtifactRejected(
                    f"package at {artifact_uri} failed verification: {error}"
                ) from error
            if manifest.name != model:
                raise ArtifactRejected(
                    f"package at {artifact_uri} is model {manifest.name!r}, not {model!r}"
                )
            if manifest.contract_fingerprint != contract_fingerprint:
                raise ArtifactRejected(
                    f"package at {artifact_uri} was built for data contract "
                    f"{manifest.contract_fingerprint}, but ModelTrained says {contract_fingerprint}"
                )
            manifest_text = (copy / MANIFEST).read_text()
            target = self.root / model / expected_sha256
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.replace(copy, target)
                except OSError:
                    if not target.exists():  # else another writer kept the same content
                        raise
            return VerifiedPackage(
                path=target, sha256=expected_sha256, manifest=_json(manifest_text)
            )
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _allowed_source(self, artifact_uri: str) -> Path | None:
        """The local folder ``artifact_uri`` names (None: a remote URI), if under an allowed root.

        Raises ArtifactRejected for a URI outside every root, or holding a symlink that leaves
        its root, before anything is copied.
        """
        parsed = urlparse(artifact_uri)
        if parsed.scheme not in LOCAL_SCHEMES and len(parsed.scheme) != 1:
            if any(_is_uri_root(r) and artifact_uri.startswith(r) for r in self.allowed_roots):
                return None
            raise ArtifactRejected(
                f"artifact {artifact_uri} is not under an allowed artifact root "
                f"({', '.join(self.allowed_roots) or 'none configured'})"
            )
        source = Path(
            url2pathname(unquote(parsed.path)) if parsed.scheme == "file" else artifact_uri
        )
        real = source.resolve()
        for root in (Path(r).resolve() for r in self.allowed_roots if not _is_uri_root(r)):
            if real.is_relative_to(root):
                _refuse_escaping_links(artifact_uri, real, root)
                return real
        raise ArtifactRejected(
            f"artifact {artifact_uri} is not under an allowed artifact root "
            f"({', '.join(self.allowed_roots) or 'none configured'})"
        )

    def _fetch(self, artifact_uri: str, source: Path | None, destination: Path) -> None:
        if source is not None:
            if not source.is_dir():
                raise ArtifactRejected(f"artifact {artifact_uri} does not exist (no directory)")
            shutil.copytree(source, destination, symlinks=False)
            return
        import mlflow

        try:
            downloaded = mlflow.artifacts.download_artifacts(
                artifact_uri=artifact_uri,
                dst_path=str(destination.parent / "download"),
                tracking_uri=self.mlflow_tracking_uri,
            )
        except Exception as error:  # MLflow raises many types for "not there"
            raise ArtifactRejected(
                f"artifact {artifact_uri} could not be downloaded: {type(error).__name__}: {error}"
            ) from error
        if not Path(downloaded).is_dir():
            raise ArtifactRejected(f"artifact {artifact_uri} is a file, not a package directory")
        os.replace(downloaded, destination)

    def read(self, package_path: str | Path, name: str, expected_sha256: str) -> bytes:
        """The bytes of one file of a kept package, checked against its sha256 as read.

        Raises FileNotFoundError (no such file in the package) or PackageIntegrityError.
        """
        directory = Path(package_path)
        manifest_bytes = _read(directory / MANIFEST)
        if hashlib.sha256(manifest_bytes).hexdigest() != expected_sha256:
            raise PackageIntegrityError(f"sha256 mismatch in {MANIFEST} of {directory}")
        if name == MANIFEST:
            return manifest_bytes
        files = read_manifest(directory).files
        if name not in files:
            raise FileNotFoundError(
                f"{name!r} is not in the package; files: {sorted([MANIFEST, *files])}"
            )
        content = _read(directory / name)
        if hashlib.sha256(content).hexdigest() != files[name]:
            raise PackageIntegrityError(f"sha256 mismatch in {name} of {directory}")
        return content


def _is_uri_root(root: str) -> bool:
    scheme = urlparse(root).scheme
    return scheme not in LOCAL_SCHEMES and len(scheme) != 1


def _refuse_escaping_links(artifact_uri: str, folder: Path, root: Path) -> None:
    """ArtifactRejected if any symlink under ``folder`` points outside ``root`` or nowhere."""
    if not folder.is_dir():
        return
    for path in folder.rglob("*"):
        if not path.is_symlink():
            continue
        target = path.resolve()
        if not target.is_relative_to(root):
            raise ArtifactRejected(
                f"artifact {artifact_uri} holds a symlink {path.relative_to(folder)} that "
                f"leaves the artifact root {root}"
            )
        if not target.exists():
            raise ArtifactRejected(
                f"artifact {artifact_uri} holds a dangling symlink {path.relative_to(folder)}"
            )


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as error:
        raise PackageIntegrityError(f"{path.name} missing in {path.parent}") from error


def _json(text: str) -> dict[str, Any]:
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ArtifactRejected(f"{MANIFEST} is not a JSON object")
    return data

"""Packages are fetched only from the configured artifact roots, never from elsewhere."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from modelbus.events import types as t
from modelbus_registry.bootstrap import Registry, bootstrap
from modelbus_registry.config import Settings
from modelbus_registry.domain import AnnouncedVersions
from modelbus_registry.handlers import register_trained_model
from modelbus_registry.mirror import NoMirror
from tests.support.events import model_trained
from tests.support.packages import make_package
from tests.support.processes import TOKEN


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "mlartifacts"


@pytest.fixture
def registry(tmp_path: Path, root: Path) -> Registry:
    settings = Settings(
        db_url=f"sqlite:///{tmp_path / 'registry.db'}",
        packages_dir=tmp_path / "packages",
        artifact_roots=[str(root), "mlflow-artifacts:/"],
        api_token=TOKEN,
    )
    return bootstrap(settings, mirror=NoMirror(), announced=AnnouncedVersions())


def register(registry: Registry, event: t.ModelTrained) -> list[Any]:
    args = (registry.store, registry.vault, registry.mirror, registry.producer)
    return register_trained_model(event, *args, registry.announced)


def kept(tmp_path: Path) -> list[Path]:
    packages = tmp_path / "packages"
    return sorted(packages.rglob("*")) if packages.exists() else []


def test_a_package_under_the_root_is_registered(registry: Registry, root: Path) -> None:
    directory = root / "1" / "package"
    [answer] = register(
        registry, model_trained("credit", directory.as_uri(), make_package(directory, "credit"))
    )

    assert isinstance(answer, t.ModelRegistered)
    assert answer.version == 1


@pytest.mark.parametrize("uri", ["file:///etc", "/etc", "s3://elsewhere/pkg", "runs:/abc/package"])
def test_a_uri_outside_every_root_is_refused_and_nothing_is_copied(
    registry: Registry, tmp_path: Path, root: Path, uri: str
) -> None:
    [answer] = register(registry, model_trained("credit", uri, "0" * 64))

    assert isinstance(answer, t.RegistrationFailed)
    assert answer.reason == (
        f"artifact {uri} is not under an allowed artifact root ({root}, mlflow-artifacts:/)"
    )
    assert kept(tmp_path) == []
    assert registry.store.versions("credit") == []


def test_a_path_that_climbs_out_of_the_root_is_refused(
    registry: Registry, tmp_path: Path, root: Path
) -> None:
    outside = tmp_path / "outside"
    sha = make_package(outside, "credit")
    root.mkdir()

    [answer] = register(registry, model_trained("credit", str(root / ".." / "outside"), sha))

    assert isinstance(answer, t.RegistrationFailed)
    assert "is not under an allowed artifact root" in answer.reason
    assert kept(tmp_path) == []


def test_a_package_folder_that_is_a_symlink_out_of_the_root_is_refused(
    registry: Registry, tmp_path: Path, root: Path
) -> None:
    outside = tmp_path / "outside"
    sha = make_package(outside, "credit")
    root.mkdir()
    (root / "package").symlink_to(outside, target_is_directory=True)

    [answer] = register(registry, model_trained("credit", str(root / "package"), sha))

    assert isinstance(answer, t.RegistrationFailed)
    assert "is not under an allowed artifact root" in answer.reason
    assert kept(tmp_path) == []


def test_a_symlink_inside_the_package_that_leaves_the_root_is_refused(
    registry: Registry, tmp_path: Path, root: Path
) -> None:
    directory = root / "1" / "package"
    sha = make_package(directory, "credit")
    (directory / "passwd").symlink_to("/etc/passwd")

    [answer] = register(registry, model_trained("credit", str(directory), sha))

    assert isinstance(answer, t.RegistrationFailed)
    assert answer.reason == (
        f"artifact {directory} holds a symlink passwd that leaves the artifact root {root}"
    )
    assert kept(tmp_path) == []


def test_a_dangling_symlink_in_the_package_is_refused_with_the_reason(
    registry: Registry, tmp_path: Path, root: Path
) -> None:
    directory = root / "1" / "package"
    sha = make_package(directory, "credit")
    (directory / "gone").symlink_to(root / "missing")

    [answer] = register(registry, model_trained("credit", str(directory), sha))

    assert isinstance(answer, t.RegistrationFailed)
    assert answer.reason == f"artifact {directory} holds a dangling symlink gone"


@pytest.mark.parametrize("root", ["/", "", "file:///"])
def test_settings_refuse_a_root_that_admits_the_whole_machine(root: str) -> None:
    with pytest.raises(ValidationError, match="would admit any file on the machine"):
        Settings(api_token=TOKEN, artifact_roots=[root])

"""Loading real packages: verified, environment-checked, warmed; refusals carry the reason."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from modelbus.packaging import package_sha256
from modelbus_inference.domain import Registration
from modelbus_inference.loading import LoadFailed, load_packaged_model
from tests.support.packages import build_credit_package, credit_contract, resign_manifest


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("pkg") / "credit"
    build_credit_package(directory, n_rows=500, epochs=5)
    return directory


def _load(directory: Path, sha256: str | None = None, policy: str = "compatible"):  # type: ignore[no-untyped-def]
    registration = Registration(3, directory.as_uri(), sha256 or package_sha256(directory))
    return load_packaged_model(registration, policy=policy, contract=credit_contract())


def test_a_good_package_loads_warm_and_predicts_probabilities(package: Path) -> None:
    model = _load(package)
    assert model.version == 3
    assert model.environment_check in ("exact", "compatible")
    scores = model.predict_rows(
        [
            {
                **dict.fromkeys(["salary", "commission", "hvalue", "loan"], 1.0),
                **dict.fromkeys(["age", "elevel", "car", "zipcode", "hyears"], 1),
            }
        ]
    )
    assert scores.shape == (1, 2)
    assert abs(float(scores.sum()) - 1.0) < 1e-5


def test_tampered_weights_are_refused_naming_the_file(package: Path, tmp_path: Path) -> None:
    copy = tmp_path / "tampered"
    shutil.copytree(package, copy)
    weights = copy / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(LoadFailed, match=r"sha256 mismatch in weights\.safetensors"):
        _load(copy)


def test_a_package_other_than_the_registered_one_is_refused(package: Path) -> None:
    with pytest.raises(LoadFailed, match=r"sha256 mismatch in manifest\.json"):
        _load(package, sha256="0" * 64)


def test_another_torch_minor_is_refused_with_the_versions(package: Path, tmp_path: Path) -> None:
    copy = tmp_path / "old-torch"
    shutil.copytree(package, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["environment"]["packages"]["torch"] = "2.9.0"
    manifest["environment"]["lock_sha256"] = "f" * 64
    (copy / "manifest.json").write_text(json.dumps(manifest))
    resign_manifest(copy)  # as a trainer on that other torch would have signed it
    with pytest.raises(LoadFailed, match=r"torch 2\.9 != "):
        _load(copy)
    with pytest.raises(LoadFailed, match=r"uv\.lock"):
        _load(copy, policy="strict")


def test_a_missing_package_is_refused(tmp_path: Path) -> None:
    with pytest.raises(LoadFailed):
        _load(tmp_path / "nowhere", sha256="0" * 64)

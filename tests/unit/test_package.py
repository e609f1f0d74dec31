"""The model package: written whole, verified file by file, loaded without pickle."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np
import pytest
import torch

from modelbus.data import generate_credit
from modelbus.events.schemas import fingerprint_of
from modelbus.packaging import (
    PackageError,
    PackageIntegrityError,
    build_mlp,
    capture_environment,
    load_package,
    package_sha256,
    read_manifest,
    verify_package,
)
from modelbus.packaging.environment import EnvironmentMismatch
from tests.support.packages import credit_contract, untrained_package


@pytest.fixture(scope="module")
def credit_rows() -> tuple[list[dict], list[int]]:
    return generate_credit(400, seed=21)


def test_a_written_package_verifies_and_describes_itself(tmp_path, credit_rows) -> None:
    directory, _ = untrained_package(tmp_path / "pkg", *credit_rows)
    manifest = verify_package(directory)
    assert sorted(p.name for p in directory.iterdir()) == [
        "architecture.json", "manifest.json", "manifest.sig", "preprocessing.json",
        "profile.json", "weights.safetensors",
    ]  # fmt: skip
    assert manifest.name == "credit"
    assert manifest.runtime == "torch-mlp"
    assert manifest.contract_name == "modelbus.models.credit.Features"
    assert manifest.contract_fingerprint == fingerprint_of(credit_contract()).hex()
    assert [f["name"] for f in manifest.features][:3] == ["salary", "commission", "age"]
    assert manifest.features[3] == {"name": "elevel", "kind": "categorical", "type": "int"}
    assert manifest.environment == capture_environment()
    for file, digest in manifest.files.items():
        assert hashlib.sha256((directory / file).read_bytes()).hexdigest() == digest
    assert (
        package_sha256(directory)
        == hashlib.sha256((directory / "manifest.json").read_bytes()).hexdigest()
    )
    profile = json.loads((directory / "profile.json").read_text())
    assert profile["rows"] == 400
    assert profile["features"]["age"]["quantiles"]["0"] == 20.0
    assert profile["features"]["age"]["quantiles"]["1"] == 80.0
    assert sum(profile["features"]["salary"]["histogram"]["counts"]) == 400


def test_the_same_inputs_give_the_same_package_sha256(tmp_path, credit_rows) -> None:
    first, _ = untrained_package(tmp_path / "a", *credit_rows)
    second, _ = untrained_package(tmp_path / "b", *credit_rows)
    assert package_sha256(first) == package_sha256(second)


@pytest.mark.parametrize(
    "file", ["weights.safetensors", "preprocessing.json", "architecture.json", "profile.json"]
)
def test_a_tampered_file_is_named(tmp_path, credit_rows, file) -> None:
    directory, _ = untrained_package(tmp_path / "pkg", *credit_rows)
    with open(directory / file, "ab") as handle:
        handle.write(b" ")
    with pytest.raises(PackageIntegrityError, match=rf"^sha256 mismatch in {file}:"):
        verify_package(directory)
    with pytest.raises(PackageIntegrityError, match=rf"sha256 mismatch in {file}"):
        load_package(directory)


def test_a_missing_file_is_named(tmp_path, credit_rows) -> None:
    directory, _ = untrained_package(tmp_path / "pkg", *credit_rows)
    (directory / "profile.json").unlink()
    with pytest.raises(PackageIntegrityError, match=r"^profile.json missing in "):
        verify_package(directory)


def test_a_manifest_other_than_the_announced_one_is_refused(tmp_path, credit_rows) -> None:
    directory, _ = untrained_package(tmp_path / "pkg", *credit_rows)
    with pytest.raises(PackageIntegrityError, match=r"^sha256 mismatch in manifest.json"):
        verify_package(directory, expected_sha256="0" * 64)
    assert verify_package(directory, expected_sha256=package_sha256(directory)).name == "credit"


def test_packages_are_immutable(tmp_path, credit_rows) -> None:
    directory, _ = untrained_package(tmp_path / "pkg", *credit_rows)
    with pytest.raises(PackageError, match="already holds files"):
        untrained_package(directory, *credit_rows)


def test_loaded_model_predicts_what_the_torch_module_computes(tmp_path, credit_rows) -> None:
    rows, labels = credit_rows
    directory, preprocessor = untrained_package(tmp_path / "pkg", rows, labels)
    model = load_package(directory)
    probabilities = model.predict_rows(rows)
    assert probabilities.shape == (400, 2)
    assert probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)

    torch.manual_seed(7)
    module = build_mlp(json.loads((directory / "architecture.json").read_text()))
    with torch.no_grad():
        expected = torch.softmax(module(torch.from_numpy(preprocessor.transform(rows))), 1)
    np.testing.assert_array_equal(probabilities, expected.numpy())
    np.testing.assert_array_equal(model.predict_matrix(preprocessor.transform(rows)), probabilities)
    assert model.environment_verdict == "exact"
    assert model.sha256 == package_sha256(directory)


def test_weights_are_safetensors_not_pickle(tmp_path, credit_rows) -> None:
    directory, _ = untrained_package(tmp_path / "pkg", *credit_rows)
    raw = (directory / "weights.safetensors").read_bytes()
    header_size = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + header_size])
    assert sorted(k for k in header if k != "__metadata__") == [
        "0.bias", "0.weight", "2.bias", "2.weight", "4.bias", "4.weight",
    ]  # fmt: skip
    assert header["0.weight"] == {**header["0.weight"], "dtype": "F32", "shape": [16, 43]}


def test_an_unknown_runtime_is_refused_with_the_known_ones(tmp_path, credit_rows) -> None:
    directory, _ = untrained_package(tmp_path / "pkg", *credit_rows, runtime="onnx")
    with pytest.raises(PackageError, match=r"no runtime named 'onnx'; known: \['torch-mlp'\]"):
        load_package(directory)


def test_a_package_from_another_torch_minor_is_refused_at_load(tmp_path, credit_rows) -> None:
    here = capture_environment()
    elsewhere = dataclasses.replace(
        here, lock_sha256="f" * 64, packages={**here.packages, "torch": "2.9.0"}
    )
    directory, _ = untrained_package(tmp_path / "pkg", *credit_rows, environment=elsewhere)
    torch_minor = ".".join(here.packages["torch"].split("+")[0].split(".")[:2])
    with pytest.raises(EnvironmentMismatch, match=rf"^torch 2.9 != {torch_minor}$"):
        load_package(directory)
    assert read_manifest(directory).environment == elsewhere

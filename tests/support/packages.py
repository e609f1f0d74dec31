"""Real credit model packages for tests and benchmarks, written with modelbus.packaging.

Three builders, by what the caller needs: ``build_credit_package`` trains a small seeded MLP
(predictions worth comparing); ``make_package`` writes seeded random weights without torch
(fast, for the registry); ``untrained_package`` writes a seeded, untrained torch MLP and hands
back its fitted preprocessor (for package and preprocessing checks).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from modelbus.data import generate_credit
from modelbus.events import load_contract
from modelbus.packaging import (
    Preprocessor,
    build_mlp,
    build_profile,
    package_sha256,
    write_package,
)
from modelbus.trust import sign_manifest
from tests.support.signing import signer

CONTRACT = "credit"
TYPED_REQUEST = "modelbus.models.credit.PredictionRequest"


def credit_contract() -> dict[str, Any]:
    """The credit data contract."""
    return load_contract(CONTRACT)


def credit_rows(n_rows: int, *, seed: int = 7) -> tuple[list[dict], list[int]]:
    """Seeded Agrawal rows and labels."""
    return generate_credit(n_rows, seed=seed)


def build_credit_package(
    directory: Path,
    *,
    name: str = "credit",
    seed: int = 1,
    n_rows: int = 2000,
    epochs: int = 30,
    flip_where: tuple[str, int] | None = None,
) -> str:
    """Train a small seeded MLP on generated credit data, write its package; returns sha256.

    ``flip_where=(feature, value)`` trains on inverted labels where the feature has that value:
    a model wrong on one slice of the inputs.
    """
    import torch

    contract = credit_contract()
    rows, labels = credit_rows(n_rows, seed=seed)
    if flip_where is not None:
        feature, value = flip_where
        labels = [
            1 - y if row[feature] == value else y for row, y in zip(rows, labels, strict=True)
        ]
    preprocessor = Preprocessor.fit(rows, contract)
    x = torch.from_numpy(preprocessor.transform(rows))
    y = torch.tensor(labels)
    architecture = {
        "kind": "mlp",
        "input_dim": int(x.shape[1]),
        "hidden": [32, 16],
        "n_classes": 2,
        "activation": "relu",
    }
    torch.manual_seed(seed)
    module = build_mlp(architecture)
    optimizer = torch.optim.Adam(module.parameters(), lr=0.01)
    for _ in range(epochs):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(module(x), y)
        loss.backward()
        optimizer.step()
    weights = {key: value.detach().numpy() for key, value in module.state_dict().items()}
    _write(
        directory,
        name,
        preprocessor,
        (rows, labels),
        architecture=architecture,
        weights=weights,
        metrics={"loss": float(loss.detach())},
        params={"seed": str(seed)},
    )
    return package_sha256(directory)


def make_package(directory: Path, model: str, *, seed: int = 7) -> str:
    """Write a small credit package named ``model``; returns its sha256 (of manifest.json)."""
    contract = credit_contract()
    rows, labels = generate_credit(60, seed=seed)
    preprocessor = Preprocessor.fit(rows, contract)
    architecture = {
        "kind": "mlp",
        "input_dim": preprocessor.n_outputs,
        "hidden": [4],
        "activation": "relu",
        "n_classes": 2,
    }
    rng = np.random.default_rng(seed)
    weights = {
        "0.weight": rng.normal(size=(4, preprocessor.n_outputs)).astype(np.float32),
        "0.bias": np.zeros(4, dtype=np.float32),
        "2.weight": rng.normal(size=(2, 4)).astype(np.float32),
        "2.bias": np.zeros(2, dtype=np.float32),
    }
    _write(
        directory,
        model,
        preprocessor,
        (rows, labels),
        architecture=architecture,
        weights=weights,
        metrics={"accuracy": 0.75},
        params={"hidden": "4", "seed": str(seed)},
    )
    return package_sha256(directory)


def resign_manifest(directory: Path) -> None:
    """Sign an edited manifest with the test trainer key, as a trainer that wrote it would."""
    sign_manifest(directory, signer("trainer"))


def untrained_package(
    directory: Path, rows: list[dict], labels: list[int], *, runtime: str = "torch-mlp", **extra
) -> tuple[Path, Preprocessor]:
    """A small untrained-but-seeded credit package (training is the trainer's business)."""
    import torch

    contract = credit_contract()
    preprocessor = Preprocessor.fit(rows, contract)
    architecture = {
        "kind": "mlp",
        "input_dim": preprocessor.n_outputs,
        "hidden": [16, 8],
        "activation": "relu",
        "n_classes": 2,
    }
    torch.manual_seed(7)
    module = build_mlp(architecture)
    _write(
        directory,
        "credit",
        preprocessor,
        (rows, labels),
        architecture=architecture,
        weights={key: value.numpy() for key, value in module.state_dict().items()},
        metrics={"accuracy": 0.5},
        params={"hidden": "16,8"},
        runtime=runtime,
        **extra,
    )
    return directory, preprocessor


def _write(
    directory: Path,
    name: str,
    preprocessor: Preprocessor,
    data: tuple[list[dict], list[int]],
    *,
    runtime: str = "torch-mlp",
    **fields: Any,
) -> None:
    """write_package for a credit model, its drift profile taken from the training rows."""
    rows, labels = data
    contract = credit_contract()
    write_package(
        directory,
        name=name,
        contract=contract,
        preprocessor=preprocessor,
        runtime=runtime,
        profile=build_profile(rows, contract, labels=labels),
        signer=signer("trainer"),
        **fields,
    )

"""Model runtimes are plugins: the manifest names one, a class per model type serves it."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from modelbus.packaging.package import ARCHITECTURE, WEIGHTS, Manifest, PackageError


@runtime_checkable
class Runtime(Protocol):
    """What serving needs of a model type (MLServer-style)."""

    def load(self) -> None:
        """Read weights into memory; called once before ``predict``."""

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Preprocessed float32 rows (n, d) -> class probabilities (n, n_classes)."""
        ...

    def unload(self) -> None:
        """Free what ``load`` took."""


RuntimeFactory = Callable[..., Runtime]
RUNTIMES: dict[str, RuntimeFactory] = {}


def register_runtime(name: str) -> Callable[[type], type]:
    """Class decorator: make a runtime loadable by the name a manifest gives."""

    def add(cls: type) -> type:
        RUNTIMES[name] = cls
        cls.runtime_name = name  # type: ignore[attr-defined]
        return cls

    return add


def runtime_for(name: str) -> RuntimeFactory:
    """The runtime class registered under ``name``."""
    try:
        return RUNTIMES[name]
    except KeyError:
        raise PackageError(
            f"no runtime named {name!r}; known: {sorted(RUNTIMES)}. Install or import the "
            "module that registers it"
        ) from None


def build_mlp(architecture: dict[str, Any]) -> Any:
    """The torch module ``architecture.json`` describes (kind 'mlp')."""
    import torch
    from torch import nn

    if architecture.get("kind") != "mlp":
        raise PackageError(f"architecture kind {architecture.get('kind')!r} is not 'mlp'")
    activations = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}
    activation = activations[architecture.get("activation", "relu")]
    sizes = [int(architecture["input_dim"]), *map(int, architecture["hidden"])]
    layers: list[torch.nn.Module] = []
    for width_in, width_out in itertools.pairwise(sizes):
        layers += [nn.Linear(width_in, width_out), activation()]
    layers.append(nn.Linear(sizes[-1], int(architecture["n_classes"])))
    return nn.Sequential(*layers)


MIN_ROWS = 16  # the fewest rows a forward pass computes; see TorchMLPRuntime.predict


@register_runtime("torch-mlp")
class TorchMLPRuntime:
    """A PyTorch MLP from architecture.json + weights.safetensors; softmax probabilities."""

    def __init__(self, directory: str | Path, manifest: Manifest, *, threads: int | None = None):
        self.directory = Path(directory)
        self.manifest = manifest
        self.threads = threads
        self.module: Any = None

    def load(self) -> None:
        """Build the module and load its tensors (safetensors: no code runs on load)."""
        import torch
        from safetensors.torch import load_file

        if self.threads is not None:
            torch.set_num_threads(self.threads)
        architecture = json.loads((self.directory / ARCHITECTURE).read_text())
        module = build_mlp(architecture)
        try:
            module.load_state_dict(load_file(str(self.directory / WEIGHTS)), strict=True)
        except RuntimeError as error:
            raise PackageError(f"{WEIGHTS} does not fit {ARCHITECTURE}: {error}") from error
        module.eval()
        self.module = module

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """(n, d) float32 -> (n, n_classes) float32 probabilities, the same bits in any batch.

        CPU matrix kernels for very few rows sum in another order than those for many, so a
        row scored in a batch of 2 could differ in its last bits from the same row in a batch
        of 500; a canary's small share of a micro-batch, re-scored by an audit, would then not
        match. Batches under ``MIN_ROWS`` are padded with zero rows (measured here: every
        batch size from 1 to 599, on 1 and 2 threads, gives each row identical bits).
        """
        import torch

        if self.module is None:
            raise RuntimeError("TorchMLPRuntime.predict before load()")
        rows = np.ascontiguousarray(batch, dtype=np.float32)
        n = len(rows)
        if n < MIN_ROWS:
            rows = np.concatenate([rows, np.zeros((MIN_ROWS - n, rows.shape[1]), np.float32)])
        with torch.inference_mode():
            return torch.softmax(self.module(torch.from_numpy(rows)), dim=1).numpy()[:n]

    def unload(self) -> None:
        """Drop the module."""
        self.module = None

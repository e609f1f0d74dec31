"""Seeded, deterministic PyTorch MLP training and holdout metrics."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from modelbus.packaging import ContractMismatch, Preprocessor, build_mlp, build_profile
from modelbus_trainer.snapshot import TrainingError
from modelbus_trainer.spec import TrainParams

RUNTIME = "torch-mlp"


@dataclass
class TrainedModel:
    """The fitted module and what training saw."""

    module: nn.Module
    architecture: dict
    losses: list[float] = field(default_factory=list)

    def weights(self) -> dict[str, np.ndarray]:
        """State dict as numpy arrays, for safetensors."""
        return {
            key: value.detach().cpu().numpy() for key, value in self.module.state_dict().items()
        }

    def predict(self, x: np.ndarray) -> np.ndarray:
        """(n, d) -> (n, n_classes) probabilities."""
        with torch.inference_mode():
            return torch.softmax(self.module(torch.from_numpy(x)), dim=1).numpy()


def stratified_split(
    labels: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, holdout indices): ``fraction`` of each class held out, seeded."""
    rng = np.random.default_rng(seed)
    train, holdout = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        cut = max(1, round(len(members) * fraction))
        if cut >= len(members):
            raise TrainingError(
                "validate",
                f"class {label} has {len(members)} rows: too few to hold out {fraction:.0%} and "
                "still train on it; add labelled rows of that class",
            )
        holdout.append(members[:cut])
        train.append(members[cut:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(holdout))


def train_mlp(
    x: np.ndarray,
    y: np.ndarray,
    params: TrainParams,
    *,
    seed: int,
    n_classes: int = 2,
    progress: Callable[[int, float, float], None] | None = None,
) -> TrainedModel:
    """Adam on cross-entropy; same inputs, seed and threads -> bit-identical weights."""
    torch.set_num_threads(params.threads)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(seed)
    architecture = {
        "kind": "mlp",
        "input_dim": int(x.shape[1]),
        "hidden": list(params.hidden),
        "activation": params.activation,
        "n_classes": n_classes,
    }
    module = build_mlp(architecture)
    optimiser = torch.optim.Adam(
        module.parameters(), lr=params.learning_rate, weight_decay=params.weight_decay
    )
    loss_fn = nn.CrossEntropyLoss()
    inputs = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    targets = torch.from_numpy(np.asarray(y, dtype=np.int64))
    shuffle = torch.Generator().manual_seed(seed)
    trained = TrainedModel(module=module, architecture=architecture)
    started = time.perf_counter()
    module.train()
    for epoch in range(1, params.epochs + 1):
        order = torch.randperm(len(inputs), generator=shuffle)
        total, batches = 0.0, 0
        for batch_number, begin in enumerate(range(0, len(order), params.batch_size)):
            index = order[begin : begin + params.batch_size]
            optimiser.zero_grad()
            loss = loss_fn(module(inputs[index]), targets[index])
            value = loss.detach().item()
            if not math.isfinite(value):
                raise TrainingError(
                    "train",
                    f"loss became {value} at epoch {epoch}, batch {batch_number}; lower "
                    f"learning_rate (now {params.learning_rate}) or look for extreme values "
                    "in the snapshot",
                )
            loss.backward()
            optimiser.step()
            total += value
            batches += 1
        trained.losses.append(total / max(batches, 1))
        if progress is not None:
            progress(epoch, trained.losses[-1], time.perf_counter() - started)
    module.eval()
    return trained


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with tied ranks averaged)."""
    labels = np.asarray(labels)
    positives = int((labels == 1).sum())
    negatives = len(labels) - positives
    if positives == 0 or negatives == 0:
        raise TrainingError("evaluate", "the holdout holds one class only; ROC AUC is undefined")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = np.asarray(scores)[order]
    ranks = np.empty(len(scores), dtype=np.float64)
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    average = first + (counts + 1) / 2.0  # 1-based average rank of each tie group
    ranks[order] = np.repeat(average, counts)
    rank_sum = ranks[labels == 1].sum()
    return float((rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives))


def evaluate(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """accuracy, roc_auc and log_loss of (n, 2) probabilities against 0/1 labels."""
    labels = np.asarray(labels, dtype=np.int64)
    clipped = np.clip(probabilities.astype(np.float64), 1e-7, 1 - 1e-7)
    chosen = clipped[np.arange(len(labels)), labels]
    return {
        "accuracy": float((probabilities.argmax(axis=1) == labels).mean()),
        "roc_auc": roc_auc(labels, probabilities[:, 1]),
        "log_loss": float(-np.log(chosen).mean()),
    }


@dataclass
class FitResult:
    """Everything a package needs from one training run."""

    preprocessor: Preprocessor
    trained: TrainedModel
    metrics: dict[str, float]
    profile: dict


def fit_model(
    rows: list[dict],
    labels: list[int],
    contract: dict,
    params: TrainParams,
    *,
    seed: int,
    progress: Callable[[int, float, float], None] | None = None,
) -> FitResult:
    """Split, fit preprocessing on the training split only, train, evaluate on the holdout."""
    y = np.asarray(labels, dtype=np.int64)
    if set(np.unique(y).tolist()) - {0, 1}:
        raise TrainingError("validate", f"labels must be 0 or 1, found {sorted(set(labels))}")
    train_index, holdout_index = stratified_split(y, params.holdout_fraction, seed)
    train_rows = [rows[i] for i in train_index]
    try:
        preprocessor = Preprocessor.fit(train_rows, contract)
        x_train = preprocessor.transform(train_rows)
        x_holdout = preprocessor.transform([rows[i] for i in holdout_index])
    except ContractMismatch as error:
        raise TrainingError("validate", f"contract mismatch: {error}") from error
    trained = train_mlp(x_train, y[train_index], params, seed=seed, progress=progress)
    probabilities = trained.predict(x_holdout)
    metrics = evaluate(y[holdout_index], probabilities)
    metrics |= {
        "train_loss": trained.losses[-1],
        "train_rows": float(len(train_index)),
        "holdout_rows": float(len(holdout_index)),
    }
    profile = build_profile(
        train_rows, contract, labels=y[train_index].tolist(), probabilities=probabilities
    )
    return FitResult(preprocessor=preprocessor, trained=trained, metrics=metrics, profile=profile)

"""MLflow pyfunc loader module: ``mlflow models serve`` runs modelbus's own loader, no pickle.

MLflow calls ``_load_pyfunc(<model>/data/<package dir>)`` and then ``predict(DataFrame)``.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from modelbus.packaging.loader import LoadedModel, load_package


class PackagePyfunc:
    """What MLflow's pyfunc flavor calls: ``predict`` on a DataFrame of contract columns."""

    def __init__(self, model: LoadedModel) -> None:
        self.model = model

    def predict(self, model_input: Any, params: dict[str, Any] | None = None) -> np.ndarray:
        """DataFrame (or list of dicts) -> (n, n_classes) class probabilities."""
        preprocessor = self.model.preprocessor
        if hasattr(model_input, "columns"):
            columns = {
                name: model_input[name].to_numpy()
                for name in preprocessor.feature_names
                if name in model_input.columns
            }
            missing = [name for name in preprocessor.feature_names if name not in columns]
            if missing:
                raise ValueError(f"input lacks contract fields {missing}")
            matrix = preprocessor.transform_columns(columns, n_rows=len(model_input))
        else:
            matrix = preprocessor.transform(list(model_input))
        return self.model.predict_matrix(matrix)

    def unwrap_python_model(self) -> LoadedModel:
        """The modelbus LoadedModel behind this pyfunc."""
        return self.model


def _load_pyfunc(data_path: str, model_config: dict[str, Any] | None = None) -> PackagePyfunc:
    # A process entry point (MLflow's server), so reading the environment here is fine.
    threads = os.environ.get("MODELBUS_TORCH_THREADS")
    policy = os.environ.get("MODELBUS_ENV_POLICY", "compatible")
    model = load_package(
        data_path,
        policy="strict" if policy == "strict" else "compatible",
        threads=int(threads) if threads else None,
    )
    return PackagePyfunc(model)

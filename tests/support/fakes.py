"""Fakes for inference's unit tests: a model that scores by a fixed rule, and a valid row."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

# A row the credit contract accepts.
CREDIT_ROW: dict[str, Any] = {
    "salary": 50_000.0,
    "commission": 10_000.0,
    "age": 40,
    "elevel": 2,
    "car": 3,
    "zipcode": 4,
    "hvalue": 100_000.0,
    "hyears": 10,
    "loan": 20_000.0,
}
NAN_SALARY = 13.0


class FakeModel:
    """Scores every row [0.25, 0.75], NaN where salary is ``NAN_SALARY``; raises when told to."""

    environment_check = "exact"
    load_ms = 1.0

    def __init__(self, version: int, *, raises: bool = False) -> None:
        self.version = version
        self.raises = raises

    def predict_rows(self, rows: list[dict[str, Any]]) -> np.ndarray:
        if self.raises:
            raise RuntimeError("boom")
        scores = np.array([[0.25, 0.75] for _ in rows])
        scores[[row["salary"] == NAN_SALARY for row in rows]] = math.nan
        return scores

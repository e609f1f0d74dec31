"""Declarative, fitted preprocessing: the same class and params in training and serving."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from operator import itemgetter
from typing import Any

import numpy as np

_NUMERIC_AVRO = {"int", "long", "float", "double"}
PREPROCESSING_FORMAT = 1


class ContractMismatch(ValueError):
    """Rows or a contract that the preprocessing cannot handle; the message says which field."""


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    """One data-contract field and how preprocessing treats it."""

    name: str
    kind: str
    avro_type: str


def feature_specs(contract: Mapping[str, Any]) -> list[FeatureSpec]:
    """The contract's fields with their ``modelbus.kind`` (numeric | categorical)."""
    specs = []
    for spec in contract.get("fields", []):
        avro_type = spec["type"]
        nullable = isinstance(avro_type, list)
        base = next(t for t in avro_type if t != "null") if nullable else avro_type
        if not isinstance(base, str):
            raise ContractMismatch(f"field {spec['name']!r}: type {avro_type!r} is not a scalar")
        kind = spec.get("modelbus.kind") or ("numeric" if base in _NUMERIC_AVRO else "categorical")
        if kind not in ("numeric", "categorical"):
            raise ContractMismatch(
                f"field {spec['name']!r}: modelbus.kind {kind!r} is neither numeric nor categorical"
            )
        if kind == "numeric" and base not in _NUMERIC_AVRO:
            raise ContractMismatch(f"field {spec['name']!r}: numeric kind on Avro type {base!r}")
        specs.append(FeatureSpec(spec["name"], kind, base))
    if not specs:
        raise ContractMismatch("the data contract has no fields")
    return specs


@dataclass(frozen=True, slots=True)
class NumericStep:
    """impute missing with ``impute``, clip to [low, high], then (x - mean) / scale."""

    name: str
    impute: float
    low: float
    high: float
    mean: float
    scale: float
    kind: str = "numeric"


@dataclass(frozen=True, slots=True)
class CategoricalStep:
    """One-hot over ``vocabulary``; anything else (or missing) goes to one last unknown column."""

    name: str
    vocabulary: list[Any] = field(default_factory=list)
    kind: str = "categorical"

    @property
    def width(self) -> int:
        """Columns it emits: one per known value plus the unknown bucket."""
        return len(self.vocabulary) + 1


Step = NumericStep | CategoricalStep


class Preprocessor:
    """Fitted feature transform: rows (dicts of contract fields) -> float32 matrix.

    Columns follow the contract's field order; a numeric field takes one column, a categorical
    one ``len(vocabulary) + 1`` (the last is the unknown bucket).
    """

    def __init__(self, steps: Sequence[Step], *, contract_name: str = "") -> None:
        self.steps = list(steps)
        self.contract_name = contract_name
        self._lookups = [
            {value: index for index, value in enumerate(step.vocabulary)}
            if isinstance(step, CategoricalStep)
            else None
            for step in self.steps
        ]
        offsets = np.cumsum([0] + [self._width(step) for step in self.steps])
        self._offsets = [int(offset) for offset in offsets]
        self.n_outputs = self._offsets[-1]
        self._compile()

    def _compile(self) -> None:
        # The hot path reads every row once into one float64 matrix; that needs each
        # categorical vocabulary to be numbers (sorted, for searchsorted).
        names = self.feature_names
        self._getter = itemgetter(*names) if len(names) > 1 else (lambda row: (row[names[0]],))
        self._all_numeric = all(
            isinstance(step, NumericStep)
            or all(_is_plain_number(value) for value in step.vocabulary)
            for step in self.steps
        )
        numeric = [(i, step) for i, step in enumerate(self.steps) if isinstance(step, NumericStep)]
        self._numeric_inputs = np.array([i for i, _ in numeric], dtype=np.intp)
        self._numeric_outputs = np.array([self._offsets[i] for i, _ in numeric], dtype=np.intp)
        self._impute = np.array([step.impute for _, step in numeric], dtype=np.float64)
        self._low = np.array([step.low for _, step in numeric], dtype=np.float64)
        self._high = np.array([step.high for _, step in numeric], dtype=np.float64)
        self._mean = np.array([step.mean for _, step in numeric], dtype=np.float64)
        self._scale = np.array([step.scale for _, step in numeric], dtype=np.float64)
        self._categorical = [
            (i, self._offsets[i], np.array(step.vocabulary, dtype=np.float64))
            for i, step in enumerate(self.steps)
            if isinstance(step, CategoricalStep) and self._all_numeric
        ]

    @staticmethod
    def _width(step: Step) -> int:
        return step.width if isinstance(step, CategoricalStep) else 1

    @property
    def feature_names(self) -> list[str]:
        """Input fields, in contract order."""
        return [step.name for step in self.steps]

    @property
    def output_names(self) -> list[str]:
        """Name of every output column ('age', 'car=3', 'car=<unknown>')."""
        names: list[str] = []
        for step in self.steps:
            if isinstance(step, CategoricalStep):
                names += [f"{step.name}={value}" for value in step.vocabulary]
                names.append(f"{step.name}=<unknown>")
            else:
                names.append(step.name)
        return names

    @classmethod
    def fit(
        cls,
        rows: Sequence[Mapping[str, Any]],
        contract: Mapping[str, Any],
        *,
        clip_quantiles: tuple[float, float] = (0.001, 0.999),
        max_categories: int = 64,
    ) -> Preprocessor:
        """Fit impute/clip/standardize and vocabularies on ``rows`` for ``contract``'s fields."""
        if not rows:
            raise ContractMismatch("cannot fit preprocessing on zero rows")
        steps: list[Step] = []
        for spec in feature_specs(contract):
            column = [row.get(spec.name) for row in rows]
            if spec.kind == "numeric":
                values = _as_float(column, spec.name)
                present = values[~np.isnan(values)]
                if present.size == 0:
                    raise ContractMismatch(f"field {spec.name!r} is missing in every row")
                low, high = np.quantile(present, clip_quantiles)
                clipped = np.clip(present, low, high)
                std = float(clipped.std())
                steps.append(
                    NumericStep(
                        name=spec.name,
                        impute=float(np.median(present)),
                        low=float(low),
                        high=float(high),
                        mean=float(clipped.mean()),
                        scale=std if std > 0 else 1.0,
                    )
                )
            else:
                counts = Counter(value for value in column if value is not None)
                top = sorted(counts.items(), key=lambda item: (-item[1], _sort_key(item[0])))
                vocabulary = sorted((value for value, _ in top[:max_categories]), key=_sort_key)
                steps.append(CategoricalStep(name=spec.name, vocabulary=vocabulary))
        name = contract.get("name", "")
        namespace = contract.get("namespace")
        full = name if "." in name or not namespace else f"{namespace}.{name}"
        return cls(steps, contract_name=full)

    def transform(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """rows -> float32 matrix of shape (len(rows), n_outputs)."""
        if self._all_numeric and rows:
            try:
                try:
                    table: list[Any] = [self._getter(row) for row in rows]
                except KeyError:  # a missing field: imputed like None
                    table = [[row.get(name) for name in self.feature_names] for row in rows]
                matrix = np.array(table, np.float64).reshape(len(rows), len(self.steps))
            except (TypeError, ValueError):
                matrix = None  # a bad value: the column path below names the field
            if matrix is not None:
                return self._transform_matrix(matrix)
        return self.transform_columns(
            {step.name: [row.get(step.name) for row in rows] for step in self.steps},
            n_rows=len(rows),
        )

    def transform_columns(
        self, columns: Mapping[str, Sequence[Any] | np.ndarray], *, n_rows: int | None = None
    ) -> np.ndarray:
        """Same as ``transform`` for column-oriented input (a DataFrame's columns, say)."""
        if n_rows is None:
            n_rows = len(next(iter(columns.values()))) if columns else 0
        out = np.zeros((n_rows, self.n_outputs), dtype=np.float32)
        if n_rows == 0:
            return out
        rows_index = np.arange(n_rows)
        for step, lookup, offset in zip(self.steps, self._lookups, self._offsets, strict=False):
            if step.name not in columns:
                raise ContractMismatch(f"input has no column {step.name!r}")
            column = columns[step.name]
            if isinstance(step, NumericStep):
                values = _as_float(column, step.name)
                values = np.where(np.isnan(values), step.impute, values)
                np.clip(values, step.low, step.high, out=values)
                out[:, offset] = (values - step.mean) / step.scale
            else:
                assert lookup is not None
                unknown = len(step.vocabulary)
                items = column.tolist() if isinstance(column, np.ndarray) else column
                index = np.fromiter(
                    (lookup.get(value, unknown) for value in items), dtype=np.intp, count=n_rows
                )
                out[rows_index, offset + index] = 1.0
        return out

    def _transform_matrix(self, matrix: np.ndarray) -> np.ndarray:
        n_rows = len(matrix)
        out = np.zeros((n_rows, self.n_outputs), dtype=np.float32)
        values = matrix[:, self._numeric_inputs]
        values = np.where(np.isnan(values), self._impute, values)
        np.clip(values, self._low, self._high, out=values)
        out[:, self._numeric_outputs] = (values - self._mean) / self._scale
        rows_index = np.arange(n_rows)
        for column, offset, vocabulary in self._categorical:
            values = matrix[:, column]
            unknown = len(vocabulary)
            if unknown == 0:
                out[:, offset] = 1.0
                continue
            position = np.minimum(np.searchsorted(vocabulary, values), unknown - 1)
            index = np.where(vocabulary[position] == values, position, unknown)
            out[rows_index, offset + index] = 1.0
        return out

    def to_dict(self) -> dict[str, Any]:
        """The fitted params as plain JSON data."""
        return {
            "format": PREPROCESSING_FORMAT,
            "contract": self.contract_name,
            "steps": [asdict(step) for step in self.steps],
        }

    def to_json(self) -> str:
        """``preprocessing.json``'s text (stable key order, so its sha256 is reproducible)."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Preprocessor:
        """Inverse of ``to_dict``."""
        if data.get("format") != PREPROCESSING_FORMAT:
            raise ContractMismatch(
                f"preprocessing format {data.get('format')!r} is not {PREPROCESSING_FORMAT}; "
                "retrain the model with this modelbus version"
            )
        steps: list[Step] = []
        for step in data["steps"]:
            fields = {key: value for key, value in step.items() if key != "kind"}
            if step["kind"] == "numeric":
                steps.append(NumericStep(**fields))
            elif step["kind"] == "categorical":
                steps.append(CategoricalStep(**fields))
            else:
                raise ContractMismatch(f"unknown preprocessing step kind {step['kind']!r}")
        return cls(steps, contract_name=data.get("contract", ""))

    @classmethod
    def from_json(cls, text: str) -> Preprocessor:
        """Inverse of ``to_json``."""
        return cls.from_dict(json.loads(text))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Preprocessor) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]


def _as_float(column: Sequence[Any] | np.ndarray, name: str) -> np.ndarray:
    try:
        # None becomes NaN here, which the impute step then replaces.
        return np.array(column, dtype=np.float64)
    except (TypeError, ValueError) as error:
        bad = next((v for v in column if not _is_number(v)), None)
        raise ContractMismatch(
            f"field {name!r} must be numeric, got {bad!r} ({type(bad).__name__})"
        ) from error


def _is_number(value: Any) -> bool:
    if value is None or isinstance(value, bool):
        return value is None
    try:
        math.isnan(float(value))
    except (TypeError, ValueError):
        return False
    return True


def _is_plain_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _sort_key(value: Any) -> tuple[str, Any]:
    return (type(value).__name__, value)

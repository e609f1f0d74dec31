"""The Preprocessor: exact fitted params, and the same transform in training and serving."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from modelbus.data import generate_credit
from modelbus.events import load_contract
from modelbus.packaging import ContractMismatch, Preprocessor, load_package
from modelbus.packaging.mlflow_loader import PackagePyfunc
from tests.support.packages import untrained_package

TINY_CONTRACT = {
    "type": "record",
    "name": "Features",
    "namespace": "modelbus.models.tiny",
    "fields": [
        {"name": "income", "type": ["null", "double"], "modelbus.kind": "numeric"},
        {"name": "city", "type": ["null", "string"], "modelbus.kind": "categorical"},
    ],
}


def credit_contract() -> dict:
    return load_contract("credit")


def test_fit_learns_exact_params_and_transform_applies_them() -> None:
    rows = [
        {"income": 1.0, "city": "a"},
        {"income": 2.0, "city": "b"},
        {"income": 3.0, "city": "a"},
        {"income": None, "city": None},
    ]
    preprocessor = Preprocessor.fit(rows, TINY_CONTRACT, clip_quantiles=(0.0, 1.0))
    numeric, categorical = preprocessor.steps
    assert (numeric.impute, numeric.low, numeric.high, numeric.mean) == (2.0, 1.0, 3.0, 2.0)
    assert numeric.scale == pytest.approx(math.sqrt(2 / 3))
    assert categorical.vocabulary == ["a", "b"]
    assert preprocessor.output_names == ["income", "city=a", "city=b", "city=<unknown>"]

    matrix = preprocessor.transform(
        [{"income": 1.0, "city": "a"}, {"income": None, "city": "z"}, {"income": 99.0}]
    )
    z = 1 / math.sqrt(2 / 3)
    expected = np.array(
        [[-z, 1, 0, 0], [0, 0, 0, 1], [z, 0, 0, 1]],  # 99 clips to 3; missing city -> unknown
        dtype=np.float32,
    )
    assert matrix.dtype == np.float32
    np.testing.assert_array_equal(matrix, expected)


def test_credit_preprocessing_has_43_columns_in_contract_order() -> None:
    rows, _ = generate_credit(500, seed=3)
    preprocessor = Preprocessor.fit(rows, credit_contract())
    assert preprocessor.n_outputs == 43  # 6 numeric + (5 + 20 + 9) categories + 3 unknowns
    assert preprocessor.feature_names == [
        "salary", "commission", "age", "elevel", "car", "zipcode", "hvalue", "hyears", "loan",
    ]  # fmt: skip
    assert preprocessor.output_names[3:6] == ["elevel=0", "elevel=1", "elevel=2"]


def test_training_and_serving_transforms_of_the_same_rows_are_identical(tmp_path) -> None:
    rows, labels = generate_credit(1_000, seed=11)
    directory, training_preprocessor = untrained_package(tmp_path / "pkg", rows, labels)
    at_training = training_preprocessor.transform(rows)

    served = load_package(directory)
    at_serving = served.preprocessor.transform(rows)
    via_mlflow_columns = PackagePyfunc(served).model.preprocessor.transform_columns(
        {name: pd.DataFrame(rows)[name].to_numpy() for name in served.preprocessor.feature_names}
    )
    np.testing.assert_array_equal(at_training, at_serving)
    np.testing.assert_array_equal(at_training, via_mlflow_columns)
    assert served.preprocessor == training_preprocessor


def test_json_round_trip_preserves_every_fitted_param() -> None:
    rows, _ = generate_credit(300, seed=5)
    preprocessor = Preprocessor.fit(rows, credit_contract())
    again = Preprocessor.from_json(preprocessor.to_json())
    assert again.to_dict() == preprocessor.to_dict()
    assert again.to_json() == preprocessor.to_json()


def test_a_non_numeric_value_names_the_field() -> None:
    rows, _ = generate_credit(50, seed=5)
    preprocessor = Preprocessor.fit(rows, credit_contract())
    bad = [dict(rows[0], salary="lots")]
    with pytest.raises(ContractMismatch, match=r"field 'salary' must be numeric, got 'lots'"):
        preprocessor.transform(bad)


def test_fitting_on_no_rows_is_refused() -> None:
    with pytest.raises(ContractMismatch, match="zero rows"):
        Preprocessor.fit([], credit_contract())


def test_the_row_fast_path_and_the_column_path_agree_on_messy_rows() -> None:
    rows, _ = generate_credit(300, seed=8)
    preprocessor = Preprocessor.fit(rows, credit_contract())
    messy, _ = generate_credit(50, seed=9, covariate_shift=2.0)
    messy[0]["car"] = 99  # unknown category
    messy[1]["salary"] = None  # missing value
    messy[2]["elevel"] = None
    del messy[3]["loan"]  # missing field
    by_rows = preprocessor.transform(messy)
    by_columns = preprocessor.transform_columns(
        {name: [row.get(name) for row in messy] for name in preprocessor.feature_names}
    )
    np.testing.assert_array_equal(by_rows, by_columns)
    car_unknown = preprocessor.output_names.index("car=<unknown>")
    assert by_rows[0, car_unknown] == 1.0
    assert by_rows[1, 0] == np.float32(
        (preprocessor.steps[0].impute - preprocessor.steps[0].mean) / preprocessor.steps[0].scale
    )

"""A row's probabilities have the same bits whatever batch the runtime scores it in."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from modelbus.packaging import load_package
from tests.support.packages import build_credit_package, credit_rows


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    directory = Path(tmp_path_factory.mktemp("runtime")) / "v1"
    build_credit_package(directory, n_rows=1_000, epochs=2)
    return load_package(directory, threads=2)


def test_every_row_scores_the_same_bits_alone_in_a_small_batch_or_in_a_large_one(
    package,  # type: ignore[no-untyped-def]
) -> None:
    rows, _labels = credit_rows(300, seed=4)
    together = package.predict_rows(rows)
    for size in (1, 2, 3, 5, 7, 9, 15, 16, 17, 33, 100):
        for start in range(0, 300 - size, 37):
            apart = package.predict_rows(rows[start : start + size])
            assert np.array_equal(apart, together[start : start + size]), (size, start)

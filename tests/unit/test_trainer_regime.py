"""What a drift job trains on, and the demo's corrupted labels: pure planning."""

from __future__ import annotations

import pytest

from modelbus.events import load_contract
from modelbus.events import types as t
from modelbus_trainer.regime import (
    BadSlice,
    flip_labels,
    older_rows_wanted,
    parse_slice,
    post_onset_ranges,
)


def test_requests_are_read_from_the_onset_to_the_end_of_each_partition() -> None:
    onset = [t.PartitionOffset(partition=0, offset=120), t.PartitionOffset(partition=2, offset=9)]
    ranges = post_onset_ranges(onset, {0: 500, 1: 300, 2: 9, 3: 40})
    assert ranges == {0: (120, 500), 1: (300, 300), 2: (9, 9), 3: (40, 40)}


def test_older_rows_fill_the_shortfall_but_never_outnumber_the_new_regime() -> None:
    assert older_rows_wanted(0, 1_000) == 0
    assert older_rows_wanted(400, 1_000) == 400
    assert older_rows_wanted(700, 1_000) == 300
    assert older_rows_wanted(1_000, 1_000) == 0


def test_a_slice_must_name_a_categorical_int_feature_of_the_contract() -> None:
    contract = load_contract("credit")
    assert parse_slice("elevel=0", contract) == ("elevel", 0)
    assert parse_slice(" car = 7", contract) == ("car", 7)
    with pytest.raises(BadSlice, match="not a feature of the contract"):
        parse_slice("colour=3", contract)
    with pytest.raises(BadSlice, match="categorical int feature; 'salary' is not"):
        parse_slice("salary=3", contract)
    with pytest.raises(BadSlice, match="is not 'feature=value'"):
        parse_slice("elevel", contract)
    with pytest.raises(BadSlice, match="is not an int"):
        parse_slice("elevel=high", contract)


def test_labels_flip_exactly_on_the_slice() -> None:
    rows = [{"elevel": e} for e in (0, 1, 0, 4, 0)]
    labels, flipped = flip_labels(rows, [1, 1, 0, 0, 1], "elevel", 0)
    assert labels == [0, 1, 1, 0, 0]
    assert flipped == 3

"""What a job trains on after drift, and the demo's deliberately corrupted labels; pure.

A job started by DriftDetected reads the requests after the onset the monitor estimated (its
``onset_offsets``, per partition of the requests topic) with their labels. Only when those are
fewer than ``min_post_drift_rows`` does it add the newest older rows, and never more of them
than there are new ones, so the new regime is always at least half of what the model sees.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from modelbus.events import types as t


class BadSlice(ValueError):
    """A ``corrupt_labels_where`` that names no categorical feature of the contract."""


def post_onset_ranges(
    onset: Sequence[t.PartitionOffset], ends: Mapping[int, int]
) -> dict[int, tuple[int, int]]:
    """partition -> [first offset after the onset, end) of the requests topic.

    >>> post_onset_ranges([t.PartitionOffset(partition=0, offset=40)], {0: 100, 1: 7})
    {0: (40, 100), 1: (7, 7)}
    """
    starts = {position.partition: position.offset for position in onset}
    # A partition the monitor saw no post-onset request on starts at its end: nothing new yet.
    return {p: (min(starts.get(p, end), end), end) for p, end in sorted(ends.items())}


def older_rows_wanted(post_onset_rows: int, min_post_drift_rows: int) -> int:
    """How many of the newest pre-onset rows to add: the shortfall, at most as many as the new.

    >>> older_rows_wanted(300, 1000), older_rows_wanted(800, 1000), older_rows_wanted(1200, 1000)
    (300, 200, 0)
    """
    shortfall = max(min_post_drift_rows - post_onset_rows, 0)
    return min(shortfall, post_onset_rows)


def parse_slice(where: str, contract: Mapping[str, Any]) -> tuple[str, int]:
    """``"feature=value"`` of a categorical (int) contract feature; BadSlice says what is wrong.

    >>> contract = {"fields": [{"name": "elevel", "type": "int", "modelbus.kind": "categorical"}]}
    >>> parse_slice("elevel=0", contract)
    ('elevel', 0)
    """
    name, sep, value = where.partition("=")
    fields = {f["name"]: f for f in contract.get("fields", [])}
    if not sep or not name.strip() or not value.strip():
        raise BadSlice(f"corrupt_labels_where {where!r} is not 'feature=value', e.g. 'elevel=0'")
    field = fields.get(name.strip())
    if field is None:
        raise BadSlice(f"corrupt_labels_where names {name!r}, not a feature of the contract")
    if field.get("modelbus.kind") != "categorical" or field.get("type") != "int":
        raise BadSlice(f"corrupt_labels_where needs a categorical int feature; {name!r} is not")
    try:
        return name.strip(), int(value)
    except ValueError as error:
        raise BadSlice(f"corrupt_labels_where value {value!r} is not an int") from error


def flip_labels(
    rows: Sequence[Mapping[str, Any]], labels: Sequence[int], feature: str, value: int
) -> tuple[list[int], int]:
    """Labels with 0 and 1 swapped where ``rows[i][feature] == value``; and how many flipped.

    >>> flip_labels([{"e": 0}, {"e": 1}, {"e": 0}], [1, 1, 0], "e", 0)
    ([0, 1, 1], 2)
    """
    flipped = [
        1 - y if row.get(feature) == value else y for row, y in zip(rows, labels, strict=True)
    ]
    return flipped, sum(a != b for a, b in zip(flipped, labels, strict=True))

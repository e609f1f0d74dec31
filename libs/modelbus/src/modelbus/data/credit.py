"""The ``credit`` model's data: River's Agrawal loan-application generator, seeded."""

from __future__ import annotations

import itertools

CREDIT_FEATURES = (
    "salary",
    "commission",
    "age",
    "elevel",
    "car",
    "zipcode",
    "hvalue",
    "hyears",
    "loan",
)
_FLOAT_FEATURES = frozenset({"salary", "commission", "hvalue", "loan"})
_SHIFTED_FEATURES = ("salary", "loan")


def generate_credit(
    n_rows: int,
    *,
    seed: int,
    classification_function: int = 0,
    covariate_shift: float = 0.0,
) -> tuple[list[dict], list[int]]:
    """``n_rows`` loan applications and their labels (1 = approve).

    Concept drift: another ``classification_function`` (0-9) labels the same inputs
    differently. Covariate drift: ``covariate_shift`` scales salary and loan by
    ``1 + covariate_shift``; labels are recomputed with the same function, so only the inputs
    move.
    """
    if n_rows < 0:
        raise ValueError(f"n_rows must be >= 0, got {n_rows}")
    from river.datasets import synth  # a heavy import, needed only to generate

    generator = synth.Agrawal(classification_function=classification_function, seed=seed)
    # River exposes no public way to label a shifted row; its functions are plain staticmethods.
    label_of = generator._classification_functions[classification_function]
    rows: list[dict] = []
    labels: list[int] = []
    for features, label in itertools.islice(generator, n_rows):
        row = {
            name: float(features[name]) if name in _FLOAT_FEATURES else int(features[name])
            for name in CREDIT_FEATURES
        }
        if covariate_shift:
            for name in _SHIFTED_FEATURES:
                row[name] *= 1.0 + covariate_shift
            label = label_of(**row)
        rows.append(row)
        labels.append(int(label))
    return rows, labels

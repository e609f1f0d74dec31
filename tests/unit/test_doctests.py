"""Every doctest example in libs/ and services/ runs: examples in docstrings stay true."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SOURCES = [REPO / "libs" / "modelbus" / "src", *sorted((REPO / "services").glob("*/src"))]


def _modules_with_examples() -> list[str]:
    modules = []
    for root in SOURCES:
        for path in sorted(root.rglob("*.py")):
            if ">>> " in path.read_text():
                parts = path.relative_to(root).with_suffix("").parts
                modules.append(".".join(p for p in parts if p != "__init__"))
    return modules


@pytest.mark.parametrize("module", _modules_with_examples())
def test_the_examples_in_the_docstrings_hold(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0

"""The import rules hold: libs are imported, services are run, tests share only tests/support.

Each rule is also run over a small tree that breaks it, to show the check can fail.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.support.architecture import (
    benchmark_imports,
    cross_service_imports,
    heavy_modules_loaded,
    imports_of_test_modules,
    imports_under,
    library_service_imports,
    pure_modules,
    static_violations,
)
from tests.support.files import write_tree

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("torch",)


def test_nothing_imports_a_test_module() -> None:
    assert imports_of_test_modules(REPO) == []


def test_benchmarks_import_only_libs_services_and_tests_support() -> None:
    assert benchmark_imports(REPO) == []


def test_no_service_imports_another_service() -> None:
    assert cross_service_imports(REPO) == []


def test_the_shared_library_imports_no_service() -> None:
    assert library_service_imports(REPO) == []


def test_importing_a_pure_module_never_imports_torch() -> None:
    modules = pure_modules(REPO)
    assert {"modelbus_trainer.domain", "modelbus_trainer.handlers"} <= set(modules)
    assert heavy_modules_loaded(modules, HEAVY) == {}


BROKEN_TREE = {
    "libs/modelbus/src/modelbus/reader.py": "import json\nimport modelbus_alpha.handlers\n",
    "services/alpha/src/modelbus_alpha/__init__.py": "",
    "services/alpha/src/modelbus_alpha/handlers.py": (
        "from modelbus.events import types\nfrom . import domain\n"
        "from modelbus_beta.domain import State\n"
    ),
    "services/alpha/src/modelbus_alpha/domain.py": "STATE = 1\n",
    "services/beta/src/modelbus_beta/__init__.py": "",
    "services/beta/src/modelbus_beta/domain.py": "import heavylib\n\n\nclass State:\n    pass\n",
    "tests/unit/test_one.py": (
        "from tests.support.ports import free_port\n\n\ndef test_it():\n"
        "    from tests.unit.test_two import helper\n"
    ),
    "tests/unit/test_two.py": "def helper():\n    pass\n",
    "benchmarks/run.py": (
        "import numpy\nfrom benchmarks.common import write_result\n"
        "from tests.support.packages import make_package\nimport tests.e2e.loop\n"
    ),
    "heavylib.py": "",
}


@pytest.fixture
def broken_tree(tmp_path: Path) -> Path:
    return write_tree(tmp_path, BROKEN_TREE)


def test_each_broken_rule_is_reported_with_its_file_and_line(broken_tree: Path) -> None:
    assert static_violations(broken_tree) == [
        "tests/unit/test_one.py:5: imports test module tests.unit.test_two",
        "benchmarks/run.py:4: benchmark imports tests.e2e.loop (only tests.support is shared)",
        "services/alpha/src/modelbus_alpha/handlers.py:3: modelbus_alpha imports service "
        "modelbus_beta",
        "libs/modelbus/src/modelbus/reader.py:2: library imports service modelbus_alpha",
    ]


def test_a_pure_module_that_loads_a_heavy_one_is_caught(broken_tree: Path) -> None:
    assert pure_modules(broken_tree) == ["modelbus_alpha.domain", "modelbus_beta.domain"]
    path = (
        broken_tree,
        broken_tree / "services" / "alpha" / "src",
        broken_tree / "services" / "beta" / "src",
    )
    loaded = heavy_modules_loaded(pure_modules(broken_tree), ("heavylib",), python_path=path)
    assert loaded == {"modelbus_beta.domain": {"heavylib"}}


def test_relative_imports_of_modules_are_seen_as_modules(broken_tree: Path) -> None:
    handlers = broken_tree / "services" / "alpha" / "src" / "modelbus_alpha"
    assert [
        found.module for found in imports_under(handlers) if found.path.name == "handlers.py"
    ] == [
        "modelbus.events",
        ".",
        ".domain",
        "modelbus_beta.domain",
    ]


def test_nothing_loads_models_with_pickle() -> None:
    unpicklers = {"pickle", "cloudpickle", "dill", "joblib"}
    for root in ("libs", "services"):
        imported = {found.module.split(".")[0] for found in imports_under(REPO / root)}
        assert not imported & unpicklers, f"{root} imports {imported & unpicklers}"
        for path in (REPO / root).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                    target = ast.unparse(node.func)
                    assert target != "torch.load", f"{path} calls torch.load (pickle-based)"

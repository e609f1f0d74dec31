"""libs are imported, services are run: no service imports another, libs import no service."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SERVICES = ["registry", "trainer", "deployer", "inference", "monitor"]


def _imports(package_dir: Path) -> set[str]:
    names: set[str] = set()
    for path in package_dir.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
    return names


def test_no_service_imports_another_service() -> None:
    for service in SERVICES:
        imported = _imports(REPO / "services" / service / "src" / f"modelbus_{service}")
        others = {f"modelbus_{other}" for other in SERVICES if other != service}
        assert not imported & others, f"{service} imports {imported & others}"


def test_the_shared_library_imports_no_service() -> None:
    imported = _imports(REPO / "libs" / "modelbus" / "src" / "modelbus")
    assert not imported & {f"modelbus_{service}" for service in SERVICES}


def test_nothing_loads_models_with_pickle() -> None:
    unpicklers = {"pickle", "cloudpickle", "dill", "joblib"}
    for root in ("libs", "services"):
        imported = _imports(REPO / root)
        assert not imported & unpicklers, f"{root} imports {imported & unpicklers}"
        for path in (REPO / root).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                    target = ast.unparse(node.func)
                    assert target != "torch.load", f"{path} calls torch.load (pickle-based)"

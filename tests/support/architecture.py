"""The import rules of the repository, checked over any tree laid out like it.

libs/<lib>/src/<package>, services/<name>/src/modelbus_<name>, tests/, benchmarks/. Each rule
returns its violations as ``path:line: what`` lines, so a failure names the line to change.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SERVICE_PREFIX = "modelbus_"


@dataclass(frozen=True)
class Import:
    """One import statement's target, as written (relative ones keep their dots)."""

    path: Path
    line: int
    module: str


def imports_under(folder: Path) -> Iterator[Import]:
    """Every import in the .py files under ``folder``, function-level ones included."""
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield Import(path, node.lineno, alias.name)
            elif isinstance(node, ast.ImportFrom):
                base = "." * node.level + (node.module or "")
                yield Import(path, node.lineno, base)
                if node.module is None:  # ``from . import name``: the names are modules
                    for alias in node.names:
                        yield Import(path, node.lineno, base + alias.name)


def _where(root: Path, found: Import) -> str:
    return f"{found.path.relative_to(root)}:{found.line}"


def _top(module: str) -> str:
    return module.split(".")[0]


def service_packages(root: Path) -> dict[str, Path]:
    """modelbus_<name> -> its source folder, for each service under ``root/services``."""
    return {
        package.name: package
        for package in sorted((root / "services").glob(f"*/src/{SERVICE_PREFIX}*"))
        if package.is_dir()
    }


def imports_of_test_modules(root: Path) -> list[str]:
    """Imports of a ``test_*`` module anywhere: helpers live in tests/support, not in tests."""
    return [
        f"{_where(root, found)}: imports test module {found.module}"
        for folder in ("libs", "services", "tests", "benchmarks")
        if (root / folder).is_dir()
        for found in imports_under(root / folder)
        if any(part.startswith("test_") for part in found.module.split("."))
    ]


def benchmark_imports(root: Path) -> list[str]:
    """Benchmarks may use libs, services and tests/support, never other test code."""
    if not (root / "benchmarks").is_dir():
        return []
    return [
        f"{_where(root, found)}: benchmark imports {found.module} (only tests.support is shared)"
        for found in imports_under(root / "benchmarks")
        if _top(found.module) == "tests"
        and not (found.module == "tests.support" or found.module.startswith("tests.support."))
    ]


def cross_service_imports(root: Path) -> list[str]:
    """Services talk through the bus only: no service imports another."""
    services = service_packages(root)
    return [
        f"{_where(root, found)}: {name} imports service {_top(found.module)}"
        for name, folder in services.items()
        for found in imports_under(folder)
        if _top(found.module) in services and _top(found.module) != name
    ]


def library_service_imports(root: Path) -> list[str]:
    """libs are imported, services are run: no lib imports a service."""
    if not (root / "libs").is_dir():
        return []
    return [
        f"{_where(root, found)}: library imports service {_top(found.module)}"
        for found in imports_under(root / "libs")
        if _top(found.module).startswith(SERVICE_PREFIX)
    ]


def static_violations(root: Path) -> list[str]:
    """Every import rule that reading the source can check."""
    return (
        imports_of_test_modules(root)
        + benchmark_imports(root)
        + cross_service_imports(root)
        + library_service_imports(root)
    )


def pure_modules(root: Path) -> list[str]:
    """Modules that must stay light: each service's domain, and the trainer's handlers."""
    services = service_packages(root)
    modules = [
        f"{name}.domain" for name, folder in services.items() if (folder / "domain.py").is_file()
    ]
    if "modelbus_trainer" in services:
        modules.append("modelbus_trainer.handlers")
    return modules


def heavy_modules_loaded(
    modules: list[str], heavy: tuple[str, ...], *, python_path: tuple[Path, ...] = ()
) -> dict[str, set[str]]:
    """module -> which of ``heavy`` importing it loads, for the modules that load any.

    One fresh interpreter imports them all (the common, clean case costs one start); only if
    that loads something heavy is each module imported alone, to name the culprits.
    """
    if not _loaded_after(modules, heavy, python_path):
        return {}
    return {m: found for m in modules if (found := _loaded_after([m], heavy, python_path))}


def _loaded_after(modules: list[str], heavy: tuple[str, ...], path: tuple[Path, ...]) -> set[str]:
    script = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(' '.join(name for name in {heavy!r} if name in sys.modules))\n"
    )
    env = dict(os.environ)
    if path:
        env["PYTHONPATH"] = os.pathsep.join([*map(str, path), env.get("PYTHONPATH", "")])
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    if result.returncode != 0:
        raise RuntimeError(f"importing {modules} failed:\n{result.stderr}")
    return set(result.stdout.split())

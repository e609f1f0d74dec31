"""The trainer's consumer side stays light: torch loads only where a job trains."""

from __future__ import annotations

import subprocess
import sys


def _modules_loaded_by(statement: str) -> set[str]:
    probe = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    return set(result.stdout.split())


def test_importing_the_handlers_never_imports_torch() -> None:
    loaded = _modules_loaded_by("import modelbus_trainer.handlers")
    assert "modelbus_trainer.handlers" in loaded
    assert "torch" not in loaded
    assert "modelbus_trainer.training" not in loaded


def test_the_job_module_is_where_torch_is_loaded() -> None:
    loaded = _modules_loaded_by("import modelbus_trainer.job")
    assert "torch" in loaded

"""What a model was trained in, and whether this process may serve it."""

from __future__ import annotations

import hashlib
import platform
from importlib import metadata
from pathlib import Path
from typing import Literal

from modelbus.events.types import Environment

KEY_PACKAGES = ("torch", "numpy", "modelbus")
Policy = Literal["strict", "compatible"]
Verdict = Literal["exact", "compatible"]


class EnvironmentMismatch(RuntimeError):
    """This process may not serve the model; ``reason`` says why, e.g. 'torch 2.9 != 2.15'."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def find_lock_file(start: Path | None = None) -> Path | None:
    """The workspace's uv.lock: searched upwards from ``start`` (cwd) and from this module."""
    roots = [start or Path.cwd(), Path(__file__).resolve()]
    for root in roots:
        for directory in [root, *root.parents]:
            candidate = directory / "uv.lock"
            if candidate.is_file():
                return candidate
    return None


def capture_environment(lock_file: Path | None = None) -> Environment:
    """Python, platform, uv.lock sha256 and key package versions of this process."""
    lock = lock_file or find_lock_file()
    lock_sha256 = hashlib.sha256(lock.read_bytes()).hexdigest() if lock else "unknown"
    packages = {}
    for name in KEY_PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = "absent"
    return Environment(
        python=platform.python_version(),
        platform=f"{platform.system()}-{platform.machine()}",
        lock_sha256=lock_sha256,
        packages=packages,
    )


def _major_minor(version: str) -> str:
    return ".".join(version.split("+")[0].split(".")[:2])


def check_environment(
    recorded: Environment, policy: Policy = "compatible", current: Environment | None = None
) -> Verdict:
    """'exact' (same uv.lock) or 'compatible'; raises EnvironmentMismatch otherwise.

    strict: the uv.lock hash must match. compatible: same Python minor and the same
    major.minor of torch and numpy.
    """
    if policy not in ("strict", "compatible"):
        raise ValueError(f"environment policy {policy!r} is neither 'strict' nor 'compatible'")
    current = current or capture_environment()
    same_python = _major_minor(recorded.python) == _major_minor(current.python)
    if recorded.lock_sha256 == current.lock_sha256 != "unknown" and same_python:
        return "exact"
    if policy == "strict":
        if recorded.lock_sha256 != current.lock_sha256:
            raise EnvironmentMismatch(
                f"uv.lock {recorded.lock_sha256[:12]} != {current.lock_sha256[:12]} "
                "(policy 'strict' needs the lock the model was trained with)"
            )
        raise EnvironmentMismatch(
            f"python {_major_minor(recorded.python)} != {_major_minor(current.python)}"
        )
    if not same_python:
        raise EnvironmentMismatch(
            f"python {_major_minor(recorded.python)} != {_major_minor(current.python)}"
        )
    for name in ("torch", "numpy"):
        trained = _major_minor(recorded.packages.get(name, "absent"))
        serving = _major_minor(current.packages.get(name, "absent"))
        if trained != serving:
            raise EnvironmentMismatch(f"{name} {trained} != {serving}")
    return "compatible"

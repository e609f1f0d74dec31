"""Environment capture and the exact / compatible / refused policies."""

from __future__ import annotations

import dataclasses
import hashlib
import platform
from importlib import metadata

import pytest

from modelbus.events.types import Environment
from modelbus.packaging import EnvironmentMismatch, capture_environment, check_environment
from modelbus.packaging.environment import find_lock_file

SERVING = Environment(
    python="3.11.7",
    platform="Linux-x86_64",
    lock_sha256="a" * 64,
    packages={"torch": "2.15.0+cu132", "numpy": "2.4.6", "modelbus": "0.1.0"},
)


def recorded(**changes) -> Environment:
    packages = {**SERVING.packages, **changes.pop("packages", {})}
    return dataclasses.replace(SERVING, packages=packages, **changes)


def test_capture_records_this_process() -> None:
    environment = capture_environment()
    lock = find_lock_file()
    assert lock is not None
    assert environment.python == platform.python_version()
    assert environment.platform == f"{platform.system()}-{platform.machine()}"
    assert environment.lock_sha256 == hashlib.sha256(lock.read_bytes()).hexdigest()
    assert environment.packages == {
        "torch": metadata.version("torch"),
        "numpy": metadata.version("numpy"),
        "modelbus": metadata.version("modelbus"),
    }


@pytest.mark.parametrize("policy", ["strict", "compatible"])
def test_same_lock_and_python_is_exact(policy) -> None:
    assert check_environment(recorded(python="3.11.2"), policy, current=SERVING) == "exact"


def test_other_lock_with_same_minors_is_compatible() -> None:
    other = recorded(lock_sha256="b" * 64, packages={"torch": "2.15.1", "numpy": "2.4.0"})
    assert check_environment(other, "compatible", current=SERVING) == "compatible"


def test_strict_refuses_another_lock() -> None:
    with pytest.raises(EnvironmentMismatch, match=r"uv.lock bbbbbbbbbbbb != aaaaaaaaaaaa"):
        check_environment(recorded(lock_sha256="b" * 64), "strict", current=SERVING)


def test_compatible_refuses_another_torch_minor_with_the_reason() -> None:
    old_torch = recorded(lock_sha256="b" * 64, packages={"torch": "2.9.1"})
    with pytest.raises(EnvironmentMismatch) as caught:
        check_environment(old_torch, "compatible", current=SERVING)
    assert caught.value.reason == "torch 2.9 != 2.15"


def test_compatible_refuses_another_python_minor() -> None:
    with pytest.raises(EnvironmentMismatch, match=r"^python 3.10 != 3.11$"):
        check_environment(
            recorded(python="3.10.4", lock_sha256="b" * 64), "compatible", current=SERVING
        )


def test_compatible_refuses_another_numpy_minor() -> None:
    with pytest.raises(EnvironmentMismatch, match=r"^numpy 1.26 != 2.4$"):
        check_environment(
            recorded(lock_sha256="b" * 64, packages={"numpy": "1.26.4"}),
            "compatible",
            current=SERVING,
        )


def test_an_unknown_policy_is_an_error() -> None:
    with pytest.raises(ValueError, match="'lenient' is neither"):
        check_environment(SERVING, "lenient", current=SERVING)  # type: ignore[arg-type]

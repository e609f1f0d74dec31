"""The model package: a directory of JSON and safetensors, verified by sha256, never pickled.

Files: manifest.json (hashes every other file), weights.safetensors, architecture.json,
preprocessing.json, profile.json. The trainer writes it with ``write_package``; serving reads
it with ``load_package``, which verifies, checks the environment and picks the runtime the
manifest names.
"""

from modelbus.packaging.environment import (
    EnvironmentMismatch,
    capture_environment,
    check_environment,
)
from modelbus.packaging.loader import LoadedModel, load_package, resolve_package
from modelbus.packaging.package import (
    ARCHITECTURE,
    MANIFEST,
    PREPROCESSING,
    PROFILE,
    WEIGHTS,
    Manifest,
    PackageError,
    PackageIntegrityError,
    PackageSignatureError,
    package_sha256,
    read_manifest,
    verify_package,
    weights_sha256,
    write_package,
)
from modelbus.packaging.preprocessing import (
    CategoricalStep,
    ContractMismatch,
    FeatureSpec,
    NumericStep,
    Preprocessor,
    feature_specs,
)
from modelbus.packaging.profile import build_profile
from modelbus.packaging.runtime import (
    RUNTIMES,
    Runtime,
    TorchMLPRuntime,
    build_mlp,
    register_runtime,
    runtime_for,
)

__all__ = [
    "ARCHITECTURE",
    "MANIFEST",
    "PREPROCESSING",
    "PROFILE",
    "RUNTIMES",
    "WEIGHTS",
    "CategoricalStep",
    "ContractMismatch",
    "EnvironmentMismatch",
    "FeatureSpec",
    "LoadedModel",
    "Manifest",
    "NumericStep",
    "PackageError",
    "PackageIntegrityError",
    "PackageSignatureError",
    "Preprocessor",
    "Runtime",
    "TorchMLPRuntime",
    "build_mlp",
    "build_profile",
    "capture_environment",
    "check_environment",
    "feature_specs",
    "load_package",
    "package_sha256",
    "read_manifest",
    "register_runtime",
    "resolve_package",
    "runtime_for",
    "verify_package",
    "weights_sha256",
    "write_package",
]

"""Throwaway signing keys for a test session, and signers that act as each role."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from modelbus.trust import Signer, SignerPerRole, generate_keys, load_signers

SIGNING_KEY_ENV = "MODELBUS_SIGNING_KEY"
TRUSTED_KEYS_ENV = "MODELBUS_TRUSTED_KEYS"


def ensure_test_keys(directory: Path | None = None) -> Path:
    """A key directory for every role, named in this process's environment (inherited by the
    services tests start); generated once, in ``directory`` or a fresh temporary folder."""
    configured = os.environ.get(SIGNING_KEY_ENV)
    if configured and Path(configured).is_dir():
        return Path(configured)
    directory = directory or Path(tempfile.mkdtemp(prefix="modelbus-test-keys-"))
    generate_keys(directory)
    os.environ[SIGNING_KEY_ENV] = str(directory)
    os.environ[TRUSTED_KEYS_ENV] = str(directory)
    return directory


def role_signers() -> SignerPerRole:
    """Signs each event as the role that owns it (ModelRegistered as the registry, ...)."""
    return load_signers(ensure_test_keys())


def signer(role: str) -> Signer:
    """The test key of one role."""
    return role_signers().signers[role]

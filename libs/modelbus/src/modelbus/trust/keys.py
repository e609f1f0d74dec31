"""Ed25519 keys on disk: one key pair per role, and a trust file naming the public keys."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ROLES = ("registry", "trainer", "deployer", "monitor", "inference", "operator")
"""Who signs: the four deciding services, inference (what it could not load), and ``operator``
for people (the CLI)."""
TRUST_FILE = "trusted-keys.json"


class KeyFileError(ValueError):
    """A key or trust file that cannot be read."""


def key_id(public_key: Ed25519PublicKey) -> str:
    """First 8 bytes of the sha256 of the raw public key, hex: short, stable, unforgeable enough.

    >>> key = Ed25519PrivateKey.from_private_bytes(bytes(32)).public_key()
    >>> key_id(key)
    '139e3940e64b5491'
    """
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_pem(public_key: Ed25519PublicKey) -> str:
    """The public key as PEM text."""
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """An Ed25519 private key from a PEM file."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as error:
        raise KeyFileError(f"cannot read the private key {path}: {error}") from error
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path} holds a {type(key).__name__}, not an Ed25519 private key")
    return key


def load_public_key(pem: str, where: str) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM text."""
    try:
        key = serialization.load_pem_public_key(pem.encode())
    except ValueError as error:
        raise KeyFileError(f"{where}: not a PEM public key: {error}") from error
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(f"{where}: a {type(key).__name__}, not an Ed25519 public key")
    return key


def private_key_path(directory: Path, role: str) -> Path:
    """Where ``modelbus keys generate`` puts a role's private key."""
    return directory / f"{role}.key.pem"


def read_trust_file(path: Path) -> dict[str, list[Ed25519PublicKey]]:
    """``{"<role>": ["<PEM>", ...]}``: every key a role may sign with (several while rotating)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise KeyFileError(f"cannot read the trust file {path}: {error}") from error
    if not isinstance(data, dict):
        raise KeyFileError(f"{path}: expected an object of role -> list of PEM public keys")
    trusted: dict[str, list[Ed25519PublicKey]] = {}
    for role, pems in data.items():
        if not isinstance(pems, list):
            raise KeyFileError(f"{path}: {role!r} must list PEM public keys")
        trusted[role] = [load_public_key(pem, f"{path} [{role}]") for pem in pems]
    return trusted


def generate_keys(directory: Path, roles: tuple[str, ...] = ROLES) -> list[Path]:
    """Write a key pair per role (private keys 0600) and the trust file; keeps existing keys."""
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    trusted: dict[str, list[str]] = {}
    trust_path = directory / TRUST_FILE
    if trust_path.is_file():
        trusted = json.loads(trust_path.read_text())
    for role in roles:
        path = private_key_path(directory, role)
        if path.is_file():
            key = load_private_key(path)
        else:
            key = Ed25519PrivateKey.generate()
            pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(pem)
            written.append(path)
        public = public_pem(key.public_key())
        (directory / f"{role}.pub.pem").write_text(public)
        if public not in trusted.setdefault(role, []):
            trusted[role].append(public)
    staged = trust_path.with_name(f".{TRUST_FILE}.new")
    staged.write_text(json.dumps(trusted, indent=2, sort_keys=True) + "\n")
    staged.replace(trust_path)  # whole or not at all: running services re-read it
    written.append(trust_path)
    return written

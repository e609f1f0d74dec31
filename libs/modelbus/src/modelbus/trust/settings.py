"""Where this process's private key and the trusted public keys are (``MODELBUS_*``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from modelbus.trust.followed import FollowedSigner, FollowedTrust
from modelbus.trust.keys import ROLES, TRUST_FILE, load_private_key, private_key_path
from modelbus.trust.signing import Signer, SignerPerRole, TrustedKeys

HOW_TO = (
    "run `modelbus keys generate --dir DIR`, then set MODELBUS_SIGNING_KEY=DIR (or the "
    "role's DIR/<role>.key.pem) and MODELBUS_TRUSTED_KEYS=DIR (or DIR/" + TRUST_FILE + ")"
)


class KeysMissing(RuntimeError):
    """No key where one is needed: the message says how to make and name one."""


class TrustSettings(BaseSettings):
    """Signing keys. Env prefix ``MODELBUS_``."""

    model_config = SettingsConfigDict(env_prefix="MODELBUS_", extra="ignore")

    signing_key: Path | None = Field(
        default=None,
        description="This process's Ed25519 private key (PEM), or a directory holding "
        "<role>.key.pem per role, as `modelbus keys generate` writes it.",
    )
    trusted_keys: Path | None = Field(
        default=None,
        description="The trust file (JSON: role -> PEM public keys), or the directory holding "
        f"{TRUST_FILE}.",
    )


def load_signer(role: str, settings: TrustSettings | None = None) -> Signer:
    """``role``'s signer, from MODELBUS_SIGNING_KEY; KeysMissing when there is none. It
    follows its key file: a replaced key signs from the next event on."""
    chosen = settings or TrustSettings()
    if chosen.signing_key is None:
        raise KeysMissing(f"no signing key for {role}: {HOW_TO}")
    path = chosen.signing_key
    if path.is_dir():
        directory, path = path, private_key_path(path, role)
        if not path.is_file() and (directory / TRUST_FILE).is_file():
            raise KeysMissing(
                f"signing key {path} for {role} does not exist: the key directory was made "
                f"before the {role} role signed; run `modelbus keys generate --dir {directory}` "
                "to add its key (existing keys are kept; the trust file gains its public key)"
            )
    if not path.is_file():
        raise KeysMissing(f"signing key {path} for {role} does not exist: {HOW_TO}")
    if path.stat().st_mode & 0o077:
        raise KeysMissing(
            f"signing key {path} can be read by other users: `chmod 600 {path}` (and consider "
            "it leaked: generate a new one and rotate)"
        )
    return FollowedSigner(role, path)


def load_signers(directory: Path, roles: tuple[str, ...] = ROLES) -> SignerPerRole:
    """Every role's signer from a key directory (tools and tests that act as each role)."""
    return SignerPerRole(
        {role: Signer(role, load_private_key(private_key_path(directory, role))) for role in roles}
    )


def load_trusted(
    settings: TrustSettings | None = None, *, required: tuple[str, ...] = ()
) -> TrustedKeys:
    """The trusted public keys, from MODELBUS_TRUSTED_KEYS; KeysMissing when there are none,
    or when no key is trusted for one of the ``required`` roles (whose events would all be
    refused). They follow the trust file: a key added or removed counts from then on."""
    chosen = settings or TrustSettings()
    if chosen.trusted_keys is None:
        raise KeysMissing(f"no trusted public keys: {HOW_TO}")
    trusted = _trusted_from(chosen.trusted_keys)
    missing = [role for role in required if not trusted.keys.get(role)]
    if missing:
        where = chosen.trusted_keys
        directory = where if where.is_dir() else where.parent
        raise KeysMissing(
            f"the trust file {where} trusts no key of {', '.join(missing)} (made before "
            f"{'that role' if len(missing) == 1 else 'those roles'} signed?): run `modelbus keys "
            f"generate --dir {directory}` where the private keys are, and give every service "
            "the rewritten trust file"
        )
    return trusted


def _trusted_from(path: Path) -> TrustedKeys:
    file = path / TRUST_FILE if path.is_dir() else path
    if not file.is_file():
        raise KeysMissing(f"trust file {file} does not exist: {HOW_TO}")
    return FollowedTrust(file)

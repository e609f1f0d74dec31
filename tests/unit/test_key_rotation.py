"""Rotating a key with every service running: the trust file and a signing key are followed."""

from __future__ import annotations

import json
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from modelbus.trust import (
    TRUST_FILE,
    Signer,
    TrustedKeys,
    TrustSettings,
    generate_keys,
    key_id,
    load_signer,
    load_trusted,
)
from modelbus.trust.keys import public_pem
from modelbus.trust.signing import event_message

TOPIC = "modelbus.lifecycle"
VALUE = b"a decision"


def pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )  # fmt: skip


def verdict(trusted: TrustedKeys, signer: Signer) -> str | None:
    """None when ``trusted`` accepts what ``signer`` signs now, else the refusal's type."""
    identity, signature = signer.signed(event_message(TOPIC, VALUE))
    role, _, key = identity.partition(":")
    rejection = trusted.verify(role, key, signature, event_message(TOPIC, VALUE))
    return None if rejection is None else rejection.error_type


def rewrite(path: Path, content: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` whole, as an operator's tooling or a Kubernetes volume update does."""
    staged = path.with_name(f".{path.name}.new")
    staged.write_bytes(content)
    staged.chmod(mode)
    staged.replace(path)


def trust(path: Path, role: str, keys: list[Ed25519PrivateKey]) -> None:
    document = json.loads(path.read_text())
    document[role] = [public_pem(key.public_key()) for key in keys]
    rewrite(path, json.dumps(document).encode(), 0o644)


def test_the_readme_rotation_runs_with_no_restart(tmp_path: Path) -> None:
    """(1) trust the new key, (2) switch the signer to it, (3) drop the old key."""
    generate_keys(tmp_path)
    settings = TrustSettings(signing_key=tmp_path, trusted_keys=tmp_path)
    trusted = load_trusted(settings)  # what a consumer loaded at start
    deployer = load_signer("deployer", settings)  # what the deployer loaded at start
    old = Signer("deployer", deployer._key)
    new = Ed25519PrivateKey.generate()
    trust_file = tmp_path / TRUST_FILE

    trust(trust_file, "deployer", [old._key, new])  # (1)
    assert sorted(trusted.keys["deployer"]) == sorted([old.key_id, key_id(new.public_key())])
    assert deployer.key_id == old.key_id
    assert verdict(trusted, deployer) is None

    rewrite(tmp_path / "deployer.key.pem", pem(new))  # (2)
    assert verdict(trusted, deployer) is None
    assert deployer.key_id == key_id(new.public_key())

    trust(trust_file, "deployer", [new])  # (3)
    assert verdict(trusted, old) == "UntrustedKey"
    assert verdict(trusted, deployer) is None


def test_an_unreadable_trust_file_keeps_the_last_keys_until_a_good_one_comes(
    tmp_path: Path,
) -> None:
    generate_keys(tmp_path)
    settings = TrustSettings(signing_key=tmp_path, trusted_keys=tmp_path)
    trusted = load_trusted(settings)
    registry = load_signer("registry", settings)
    good = (tmp_path / TRUST_FILE).read_text()
    (tmp_path / TRUST_FILE).write_text(good[: len(good) // 2])  # half written
    assert verdict(trusted, registry) is None
    (tmp_path / TRUST_FILE).unlink()  # mid-replacement
    assert verdict(trusted, registry) is None
    (tmp_path / TRUST_FILE).write_text(json.dumps({"registry": []}))
    assert verdict(trusted, registry) == "UntrustedKey"


def test_a_replacement_key_others_may_read_is_refused_and_the_last_key_signs(
    tmp_path: Path,
) -> None:
    generate_keys(tmp_path)
    settings = TrustSettings(signing_key=tmp_path, trusted_keys=tmp_path)
    trainer = load_signer("trainer", settings)
    before = trainer.key_id
    rewrite(tmp_path / "trainer.key.pem", pem(Ed25519PrivateKey.generate()), 0o644)
    assert verdict(load_trusted(settings), trainer) is None
    assert trainer.key_id == before

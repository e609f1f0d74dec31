"""A package's manifest, vouched for by the trainer: ``manifest.sig`` beside ``manifest.json``."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from modelbus.trust.signing import Signer, TrustedKeys, manifest_message

MANIFEST_SIGNATURE = "manifest.sig"
MANIFEST_SIGNED_BY = "trainer"


class ManifestSignatureError(ValueError):
    """A manifest whose signature is missing, malformed, by the wrong role, or wrong."""


def sign_manifest(directory: Path, signer: Signer) -> Path:
    """Sign ``manifest.json``'s exact bytes; writes and returns ``manifest.sig``."""
    manifest = (directory / "manifest.json").read_bytes()
    identity, signed = signer.signed(manifest_message(manifest))
    signature = {"signer": identity, "signature": base64.b64encode(signed).decode()}
    path = directory / MANIFEST_SIGNATURE
    path.write_text(json.dumps(signature, sort_keys=True) + "\n")
    return path


def verify_manifest(directory: Path, manifest: bytes, trusted: TrustedKeys) -> str:
    """The signer (``role:key id``) of ``manifest``'s bytes, or ManifestSignatureError."""
    path = directory / MANIFEST_SIGNATURE
    if not path.is_file():
        raise ManifestSignatureError(
            f"{MANIFEST_SIGNATURE} missing in {directory}: the manifest is signed by no one"
        )
    try:
        data = json.loads(path.read_text())
        signer = str(data["signer"])
        signature = base64.b64decode(data["signature"], validate=True)
    except (ValueError, KeyError, TypeError) as error:
        raise ManifestSignatureError(f"{path} is not a manifest signature: {error}") from error
    role, _, key = signer.partition(":")
    if role != MANIFEST_SIGNED_BY:
        raise ManifestSignatureError(
            f"{path}: signed by {role!r}; only the {MANIFEST_SIGNED_BY} signs packages"
        )
    rejection = trusted.verify(role, key, signature, manifest_message(manifest))
    if rejection is not None:
        raise ManifestSignatureError(f"{path}: {rejection.reason} (manifest.json was altered?)")
    return signer

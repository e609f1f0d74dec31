"""Signed decisions: Ed25519 keys per role, signatures on events and on package manifests."""

from modelbus.trust.keys import ROLES, TRUST_FILE, KeyFileError, generate_keys, key_id
from modelbus.trust.manifests import (
    MANIFEST_SIGNATURE,
    ManifestSignatureError,
    sign_manifest,
    verify_manifest,
)
from modelbus.trust.settings import (
    KeysMissing,
    TrustSettings,
    load_signer,
    load_signers,
    load_trusted,
)
from modelbus.trust.signing import (
    SIGNATURE_ERRORS,
    SIGNATURE_HEADER,
    SIGNED_BY,
    SIGNER_HEADER,
    Rejection,
    Signer,
    SignerPerRole,
    TrustedKeys,
    check_event,
)

__all__ = [
    "MANIFEST_SIGNATURE",
    "ROLES",
    "SIGNATURE_ERRORS",
    "SIGNATURE_HEADER",
    "SIGNED_BY",
    "SIGNER_HEADER",
    "TRUST_FILE",
    "KeyFileError",
    "KeysMissing",
    "ManifestSignatureError",
    "Rejection",
    "Signer",
    "SignerPerRole",
    "TrustSettings",
    "TrustedKeys",
    "check_event",
    "generate_keys",
    "key_id",
    "load_signer",
    "load_signers",
    "load_trusted",
    "sign_manifest",
    "verify_manifest",
]

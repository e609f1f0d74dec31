"""Key files followed while a service runs: rotating a key needs no restart.

A trust file is re-read when it changes (a key added before a signer switches to it, or an old
one removed after); a private key file likewise (the service signs with the new key from its
next event). A version that cannot be read (half written, or a private key others may read)
is refused with a warning and the last good keys stay in use. A version is the file's
(mtime, inode, size), which also changes when Kubernetes swaps a mounted Secret or ConfigMap.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from modelbus.trust.keys import KeyFileError, key_id, load_private_key, read_trust_file
from modelbus.trust.signing import Signer, TrustedKeys, by_key_id

log = structlog.get_logger(__name__)

Version = tuple[int, int, int]


def file_version(path: Path) -> Version:
    """What changes when the file is rewritten or replaced: (mtime ns, inode, size)."""
    stat = os.stat(path)
    return stat.st_mtime_ns, stat.st_ino, stat.st_size


def private_key_exposed(path: Path) -> bool:
    """Whether users other than the owner may read or write the key file."""
    return bool(os.stat(path).st_mode & 0o077)


class FollowedTrust(TrustedKeys):
    """The keys of a trust file, re-read whenever the file changes."""

    def __init__(self, file: Path) -> None:
        self.file = file
        self._version = file_version(file)
        super().__init__(read_trust_file(file))
        self._lock = threading.Lock()

    @property
    def keys(self) -> dict[str, dict[str, Ed25519PublicKey]]:
        """Role -> key id -> public key, as the trust file holds them now."""
        with self._lock:
            self._follow()
            return self._keys

    def _follow(self) -> None:
        try:
            version = file_version(self.file)
        except OSError:
            return  # mid-replacement, or removed: keep the last keys
        if version == self._version:
            return
        self._version = version
        try:
            self._keys = by_key_id(read_trust_file(self.file))
        except KeyFileError as error:
            log.warning("trust file unreadable; keeping its last keys", error=str(error))
            return
        trusted = {role: sorted(ids) for role, ids in self._keys.items()}
        log.info("trust file re-read", file=str(self.file), keys=trusted)


class FollowedSigner(Signer):
    """A role's signer whose private key file is re-read whenever it changes."""

    def __init__(self, role: str, path: Path) -> None:
        self.path = path
        self._version = file_version(path)
        super().__init__(role, load_private_key(path))
        self._lock = threading.Lock()

    def signed(self, message: bytes) -> tuple[str, bytes]:
        """(identity, signature) by the key the file holds now."""
        with self._lock:
            self._follow()
            return super().signed(message)

    def _follow(self) -> None:
        try:
            version = file_version(self.path)
        except OSError:
            return  # mid-replacement, or removed: sign with the last key
        if version == self._version:
            return
        self._version = version
        try:
            if private_key_exposed(self.path):
                raise KeyFileError(f"{self.path} can be read by other users (chmod 600 it)")
            key: Ed25519PrivateKey = load_private_key(self.path)
        except (OSError, KeyFileError) as error:
            log.warning("signing key unreadable; signing with the last one",
                        role=self.role, file=str(self.path), error=str(error))  # fmt: skip
            return
        previous, self._key = self.key_id, key
        self.key_id = key_id(key.public_key())
        log.info("signing key replaced", role=self.role, previous=previous, now=self.key_id)

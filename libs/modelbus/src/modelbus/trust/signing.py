"""Signing what a role decides, and checking that a decision came from the role that owns it.

A signature covers the topic and the exact message value, so a valid event cannot be replayed
onto another topic nor altered by a byte; it travels in two Kafka headers, beside the event.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from modelbus.trust.keys import key_id

SIGNER_HEADER = "modelbus-signer"
SIGNATURE_HEADER = "modelbus-signature"

SIGNED_BY: dict[str, tuple[str, ...]] = {
    # The trainer's outcomes (the registry registers them; the trainer folds its own jobs).
    "modelbus.events.TrainingStarted": ("trainer",),
    "modelbus.events.ModelTrained": ("trainer",),
    "modelbus.events.TrainingFailed": ("trainer",),
    # What the registry holds (the deployer rolls it out, inference and the monitor load it).
    "modelbus.events.ModelRegistered": ("registry",),
    # The deployer's decisions; an operator may shift traffic by hand.
    "modelbus.events.RolloutStarted": ("deployer",),
    "modelbus.events.TrafficShifted": ("deployer", "operator"),
    "modelbus.events.CanaryEvaluated": ("deployer",),
    "modelbus.events.ModelPromoted": ("deployer",),
    "modelbus.events.ModelRolledBack": ("deployer",),
    # The monitor's findings (the deployer judges canaries on health, the trainer retrains).
    "modelbus.events.ModelHealth": ("monitor",),
    "modelbus.events.DriftDetected": ("monitor",),
    # What inference could (not) load: a load failure rolls a canary back.
    "modelbus.events.ModelLoaded": ("inference",),
    "modelbus.events.ModelLoadFailed": ("inference",),
    # Requests: from the CLI (operator) or through the registry's authenticated API.
    "modelbus.events.TrainingRequested": ("operator", "registry"),
    "modelbus.events.PromotionRequested": ("operator", "registry"),
    "modelbus.events.RollbackRequested": ("operator", "registry"),
}
"""Decisions consumers act on only when signed by one of these roles (event schema -> roles).

The first role is the one that usually publishes it (``SignerPerRole`` signs as that role).
Inference signs what it publishes to the lifecycle log: the deployer rolls a canary back on a
``ModelLoadFailed`` only when inference signed it.
"""


SIGNATURE_ERRORS = frozenset({"UnsignedEvent", "WrongSigner", "UntrustedKey", "BadSignature"})
"""The DeadLetter error types of refused signatures (what ``modelbus audit`` reports)."""


def event_message(topic: str, value: bytes) -> bytes:
    """The bytes an event's signature covers: a purpose tag, the topic, then the value."""
    return b"modelbus-event-v1\0" + topic.encode() + b"\0" + value


def manifest_message(manifest: bytes) -> bytes:
    """The bytes a package manifest's signature covers."""
    return b"modelbus-manifest-v1\0" + manifest


class EventSigner(Protocol):
    """What a publisher needs: the signature headers of one message."""

    def headers(self, topic: str, value: bytes, schema_name: str) -> list[tuple[str, bytes]]: ...


class Signer:
    """One role's private key: signs what that role publishes."""

    def __init__(self, role: str, private_key: Ed25519PrivateKey) -> None:
        self.role = role
        self._key = private_key
        self.key_id = key_id(private_key.public_key())

    @property
    def identity(self) -> str:
        """``<role>:<key id>``, as the signer header carries it."""
        return f"{self.role}:{self.key_id}"

    def sign(self, message: bytes) -> bytes:
        """A 64-byte Ed25519 signature."""
        return self.signed(message)[1]

    def signed(self, message: bytes) -> tuple[str, bytes]:
        """(identity, signature) of ``message``, both of one and the same key."""
        return self.identity, self._key.sign(message)

    def headers(self, topic: str, value: bytes, schema_name: str) -> list[tuple[str, bytes]]:
        """The signature headers of one message."""
        identity, signature = self.signed(event_message(topic, value))
        return [(SIGNER_HEADER, identity.encode()), (SIGNATURE_HEADER, signature)]


class SignerPerRole:
    """Signs each event with the key of the role that owns it (tests and tools acting as them)."""

    def __init__(self, signers: Mapping[str, Signer], default_role: str = "operator") -> None:
        self.signers = dict(signers)
        self.default_role = default_role

    def headers(self, topic: str, value: bytes, schema_name: str) -> list[tuple[str, bytes]]:
        """Headers signed by the first role allowed for ``schema_name``, else the default."""
        role = SIGNED_BY.get(schema_name, (self.default_role,))[0]
        return self.signers[role].headers(topic, value, schema_name)


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a message's signature is not accepted: a DeadLetter error type and a reason."""

    error_type: str
    reason: str


def by_key_id(
    keys: Mapping[str, list[Ed25519PublicKey]],
) -> dict[str, dict[str, Ed25519PublicKey]]:
    """Role -> key id -> public key."""
    return {role: {key_id(key): key for key in pems} for role, pems in keys.items()}


class TrustedKeys:
    """The public keys each role may sign with; several per role while a key is rotated."""

    def __init__(self, keys: Mapping[str, list[Ed25519PublicKey]]) -> None:
        self._keys = by_key_id(keys)

    @property
    def keys(self) -> dict[str, dict[str, Ed25519PublicKey]]:
        """Role -> key id -> public key, as trusted now."""
        return self._keys

    def verify(self, role: str, key: str, signature: bytes, message: bytes) -> Rejection | None:
        """None when ``role``'s key ``key`` made ``signature`` over ``message``."""
        public = self.keys.get(role, {}).get(key)
        if public is None:
            return Rejection("UntrustedKey", f"key {key} is not a trusted {role} key")
        try:
            public.verify(signature, message)
        except InvalidSignature:
            return Rejection("BadSignature", f"signature by {role}:{key} does not match")
        return None


def check_event(
    schema_name: str,
    topic: str,
    value: bytes,
    headers: Mapping[str, bytes],
    trusted: TrustedKeys,
) -> Rejection | None:
    """None when the event may be acted on: no signature needed, or one by an allowed role.

    >>> keys = TrustedKeys({})
    >>> check_event("modelbus.events.TrafficShifted", "t", b"v", {}, keys).error_type
    'UnsignedEvent'
    >>> check_event("modelbus.events.Feedback", "t", b"v", {}, keys) is None
    True
    """
    allowed = SIGNED_BY.get(schema_name)
    if allowed is None:
        return None
    kind = schema_name.rsplit(".", 1)[-1]
    signer = headers.get(SIGNER_HEADER)
    signature = headers.get(SIGNATURE_HEADER)
    if not signer or not signature:
        return Rejection(
            "UnsignedEvent",
            f"{kind} carries no signature; it must come from {' or '.join(allowed)}",
        )
    role, _, key = signer.decode(errors="replace").partition(":")
    if role not in allowed:
        return Rejection(
            "WrongSigner", f"{kind} signed by {role!r}; only {' or '.join(allowed)} may sign it"
        )
    rejection = trusted.verify(role, key, signature, event_message(topic, value))
    if rejection is not None:
        return Rejection(rejection.error_type, f"{kind}: {rejection.reason}")
    return None

"""Typed failures of the wire format; each says where the bytes came from and what was wrong."""

from __future__ import annotations


class CodecError(ValueError):
    """A message could not be encoded or decoded."""

    def __init__(self, cause: str, *, where: str = "message") -> None:
        super().__init__(f"{where}: {cause}")
        self.cause = cause
        self.where = where


class TruncatedMessage(CodecError):
    """Fewer bytes than the 10-byte single-object header, or a body cut short."""


class BadMagic(CodecError):
    """The bytes do not start with the Avro single-object marker C3 01."""


class UnknownSchema(CodecError):
    """No schema with this fingerprint was ever published to the schema store."""


class BodyMismatch(CodecError):
    """The fingerprint is known but the body does not decode with that schema."""


class EncodeError(CodecError):
    """A value does not fit its schema (wrong type, missing field)."""

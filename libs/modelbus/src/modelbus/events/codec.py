"""Avro single-object encoding (C3 01 + CRC-64-AVRO fingerprint + body) with fastavro."""

from __future__ import annotations

from dataclasses import dataclass
from io import BytesIO
from typing import Any

from fastavro import schemaless_reader, schemaless_writer

from modelbus.events.errors import BadMagic, BodyMismatch, EncodeError, TruncatedMessage
from modelbus.events.errors import UnknownSchema as UnknownSchemaError
from modelbus.events.store import KnownSchema, SchemaStore

MAGIC = b"\xc3\x01"
HEADER_BYTES = 10


@dataclass(frozen=True, slots=True)
class GenericRecord:
    """A decoded message whose schema this process has no Python class for."""

    schema_name: str
    fields: dict[str, Any]


class Codec:
    """Encodes events to single-object Avro and decodes them with writer/reader resolution."""

    def __init__(self, store: SchemaStore, classes: dict[str, type[Any]]) -> None:
        self.store = store
        self._classes = classes

    def encode(self, event: Any, *, schema_name: str | None = None) -> bytes:
        """Encode a typed event (``to_avro``) or a plain dict under ``schema_name``."""
        name = schema_name or event.SCHEMA_NAME
        known = self.store.reader(name)
        if known is None:
            raise EncodeError(f"no schema named {name!r} is known", where=name)
        record = event if isinstance(event, dict) else event.to_avro()
        return self.encode_record(record, known)

    def encode_record(self, record: dict[str, Any], known: KnownSchema) -> bytes:
        """Encode a dict already shaped like ``known``'s schema (the hot path)."""
        buffer = BytesIO()
        buffer.write(MAGIC)
        buffer.write(known.fingerprint)
        try:
            schemaless_writer(buffer, known.parsed, record)
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as error:
            raise EncodeError(
                f"value does not fit {known.name}: {error}", where=known.name
            ) from error
        return buffer.getvalue()

    def writer_of(self, data: bytes, *, where: str = "message") -> KnownSchema:
        """The writer schema named by a message's header."""
        if len(data) < HEADER_BYTES:
            raise TruncatedMessage(
                f"{len(data)} bytes is shorter than the 10-byte single-object header", where=where
            )
        if data[:2] != MAGIC:
            raise BadMagic(
                f"starts with {data[:2].hex()} instead of c301 (Avro single-object encoding)",
                where=where,
            )
        fingerprint = data[2:HEADER_BYTES]
        known = self.store.lookup(fingerprint)
        if known is None:
            raise UnknownSchemaError(
                f"writer schema fingerprint {fingerprint.hex()} was never published to "
                "modelbus.schemas; the producer must publish its schemas before writing",
                where=where,
            )
        return known

    def decode_record(
        self, data: bytes, *, where: str = "message", reader: KnownSchema | None = None
    ) -> tuple[KnownSchema, dict[str, Any]]:
        """Decode to (writer schema, dict), resolved to today's reader schema for that name."""
        writer = self.writer_of(data, where=where)
        reader = reader or self.store.reader(writer.name)
        reader_parsed = None if reader is None or reader is writer else reader.parsed
        if reader is not None and reader.fingerprint == writer.fingerprint:
            reader_parsed = None
        buffer = BytesIO(data)
        buffer.seek(HEADER_BYTES)
        try:
            record: Any = schemaless_reader(buffer, writer.parsed, reader_parsed)
        except EOFError as error:
            raise TruncatedMessage(f"body of {writer.name} is cut short", where=where) from error
        except Exception as error:  # fastavro raises many types on garbage bodies
            raise BodyMismatch(
                f"body does not decode as {writer.name} ({fingerprint_hex(writer)}): "
                f"{type(error).__name__}: {error}",
                where=where,
            ) from error
        if buffer.tell() != len(data):
            raise BodyMismatch(
                f"{len(data) - buffer.tell()} bytes left over after decoding {writer.name} "
                f"({fingerprint_hex(writer)}): the body does not match its fingerprint",
                where=where,
            )
        return writer, record

    def decode(self, data: bytes, *, where: str = "message") -> Any:
        """Decode to the typed event class, or a GenericRecord for a schema unknown in code."""
        writer, record = self.decode_record(data, where=where)
        cls = self.class_for(writer.name)
        if cls is None:
            return GenericRecord(writer.name, record)
        try:
            return cls.from_avro(record)
        except (KeyError, TypeError) as error:
            raise BodyMismatch(
                f"{writer.name} lacks what {cls.__name__} needs: {error}", where=where
            ) from error

    def class_for(self, schema_name: str) -> type[Any] | None:
        """The Python class for a schema name (per-model requests map to PredictionRequest)."""
        cls = self._classes.get(schema_name)
        if cls is None and schema_name.startswith("modelbus.models."):
            cls = self._classes.get("modelbus.events." + schema_name.rpartition(".")[2])
        return cls


def fingerprint_hex(known: KnownSchema) -> str:
    """Fingerprint as the schemas topic keys it."""
    return known.fingerprint.hex()

"""Decode a request against the model's data contract, or say exactly why it is refused."""

from __future__ import annotations

import math
import struct
from io import BytesIO
from typing import Any

from fastavro import schemaless_reader

from modelbus.events import Codec, CodecError, KnownSchema
from modelbus.events.codec import HEADER_BYTES, MAGIC
from modelbus_inference.avro_reader import Reader, Unsupported, compile_reader

GENERIC_REQUEST = "modelbus.events.PredictionRequest"
# What Avro's int and long hold; Apache Avro's Java reader refuses an over-long varint too.
INTEGER_RANGES = {"int": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}
_PYTHON_TYPES: dict[str, tuple[type, ...]] = {
    "double": (float, int),
    "float": (float, int),
    "int": (int, float),  # an integral float (42.0, as Python's avro writes) is the int 42
    "long": (int, float),
    "string": (str,),
    "boolean": (bool,),
}


class Rejected(Exception):
    """A request that breaks the contract; ``error_type`` and ``reason`` go in its DeadLetter."""

    def __init__(self, error_type: str, reason: str) -> None:
        super().__init__(reason)
        self.error_type = error_type
        self.reason = reason


class ContractFields:
    """The contract's fields: their Avro types and which must be finite."""

    def __init__(self, contract: dict[str, Any]) -> None:
        self.types: dict[str, str] = {}
        self.nullable: set[str] = set()
        for spec in contract["fields"]:
            kind = spec["type"]
            if isinstance(kind, list):
                self.nullable.add(spec["name"])
                kind = next(k for k in kind if k != "null")
            self.types[spec["name"]] = kind if isinstance(kind, str) else kind["type"]
        self.floats = tuple(n for n, k in self.types.items() if k in ("double", "float"))
        self.integers = tuple(
            (name, *INTEGER_RANGES[kind])
            for name, kind in self.types.items()
            if kind in INTEGER_RANGES
        )

    def check_values(self, features: dict[str, Any]) -> None:
        """Raise Rejected naming the first NaN or infinite number, or integer out of its range.

        >>> fields = ContractFields({"fields": [{"name": "age", "type": "int"}]})
        >>> try:
        ...     fields.check_values({"age": 2**40})
        ... except Rejected as refused:
        ...     print(refused.reason)
        field 'age' is 1099511627776, outside an Avro int (-2147483648..2147483647)
        """
        for name in self.floats:
            value = features[name]
            if value is not None and not math.isfinite(value):
                raise Rejected(
                    "ContractViolation", f"field {name!r} is {value}, not a finite number"
                )
        for name, low, high in self.integers:
            value = features[name]
            if value is not None and not low <= value <= high:
                kind = self.types[name]
                raise Rejected(
                    "ContractViolation",
                    f"field {name!r} is {value}, outside an Avro {kind} ({low}..{high})",
                )

    def coerce(self, features: dict[str, Any]) -> dict[str, Any]:
        """A generic map of features checked field by field and shaped like the contract."""
        missing = [name for name in self.types if features.get(name) is None]
        missing = [name for name in missing if name not in self.nullable]
        if missing:
            raise Rejected("ContractViolation", f"missing field(s) {', '.join(map(repr, missing))}")
        unknown = sorted(set(features) - set(self.types))
        if unknown:
            raise Rejected("ContractViolation", f"unknown field(s) {', '.join(map(repr, unknown))}")
        shaped: dict[str, Any] = {}
        for name, kind in self.types.items():
            value: Any = features.get(name)
            allowed = _PYTHON_TYPES.get(kind, (object,))
            is_bool = isinstance(value, bool) and kind != "boolean"
            fractional = isinstance(value, float) and kind in INTEGER_RANGES
            fractional = fractional and not (math.isfinite(value) and value.is_integer())
            if value is not None and (is_bool or fractional or not isinstance(value, allowed)):
                raise Rejected(
                    "ContractViolation",
                    f"field {name!r} is {type(value).__name__} {value!r}; the contract says {kind}",
                )
            number: Any = value  # checked above: an int or float where the contract says so
            if number is not None and kind in ("double", "float"):
                number = float(number)
            elif number is not None and kind in INTEGER_RANGES:
                number = int(number)
            shaped[name] = number
        return shaped


class RequestDecoder:
    """bytes -> request record whose ``features`` fit the contract, else Rejected."""

    def __init__(
        self,
        codec: Codec,
        typed_request: KnownSchema,
        contract: dict[str, Any],
        *,
        model: str,
        max_request_bytes: int,
    ) -> None:
        self.codec = codec
        self.typed_request = typed_request
        self.fields = ContractFields(contract)
        self.model = model
        self.max_request_bytes = max_request_bytes
        self._typed_fingerprint = typed_request.fingerprint
        self._typed_parsed = typed_request.parsed
        try:
            self._compiled: Reader | None = compile_reader(typed_request.schema)
        except Unsupported:
            self._compiled = None

    def decode(self, value: bytes | None, *, where: str = "message") -> dict[str, Any]:
        """The request record, validated, with ``sent_at_s`` (epoch seconds); raises Rejected."""
        if not value:
            raise Rejected("EmptyMessage", "message has no value (null or empty)")
        if len(value) > self.max_request_bytes:
            raise Rejected(
                "OversizedMessage",
                f"{len(value)} bytes exceeds the {self.max_request_bytes}-byte request limit",
            )
        if value[2:HEADER_BYTES] == self._typed_fingerprint and value[:2] == MAGIC:
            if self._compiled is not None:
                record = self._decode_compiled(value, where)
            else:
                record = self._decode_typed(value, where)
                record["sent_at_s"] = record["sent_at"].timestamp()
        else:
            record = self._decode_other(value, where)
            record["sent_at_s"] = record["sent_at"].timestamp()
        if record["model"] != self.model:
            raise Rejected(
                "UnknownModel",
                f"request names model {record['model']!r} but this stream serves {self.model!r}",
            )
        self.fields.check_values(record["features"])
        return record

    def _decode_compiled(self, value: bytes, where: str) -> dict[str, Any]:
        assert self._compiled is not None
        try:
            record, end = self._compiled(value, HEADER_BYTES)
        except (IndexError, ValueError, struct.error) as error:  # UnicodeError is a ValueError
            raise Rejected(
                "BodyMismatch", f"{where}: body does not decode as the contract: {error}"
            ) from error
        if end != len(value):
            raise Rejected(
                "BodyMismatch",
                f"{where}: {len(value) - end} bytes left over after decoding the request",
            )
        record["sent_at_s"] = record["sent_at"] / 1000
        return record

    def _decode_typed(self, value: bytes, where: str) -> dict[str, Any]:
        buffer = BytesIO(value)
        buffer.seek(HEADER_BYTES)
        try:
            record: Any = schemaless_reader(buffer, self._typed_parsed, None)
        except Exception as error:  # fastavro raises many types on garbage bodies
            raise Rejected(
                "BodyMismatch", f"{where}: body does not decode as the contract: {error}"
            ) from error
        if buffer.tell() != len(value):
            raise Rejected(
                "BodyMismatch",
                f"{where}: {len(value) - buffer.tell()} bytes left over after decoding the request",
            )
        return record

    def _decode_other(self, value: bytes, where: str) -> dict[str, Any]:
        try:
            writer, record = self.codec.decode_record(value, where=where)
        except CodecError as error:
            raise Rejected(type(error).__name__, str(error)) from error
        if writer.name == GENERIC_REQUEST:
            record["features"] = self.fields.coerce(record["features"])
            return record
        if writer.name != self.typed_request.name:
            raise Rejected(
                "ContractViolation",
                f"{where}: written as {writer.name}, not {self.typed_request.name} or "
                f"{GENERIC_REQUEST}",
            )
        return record

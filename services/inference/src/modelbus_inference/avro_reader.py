"""A compiled Avro binary reader for flat records (the typed request), without datetimes.

fastavro's schemaless_reader spends most of its ~10-20 us per request building two datetime
objects and a generic decode; the stream needs plain numbers. Records of primitives,
nested records and ``[null, x]`` unions are compiled into closures; anything else is
reported as unsupported so the caller keeps fastavro.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

Reader = Callable[[bytes, int], tuple[Any, int]]
_DOUBLE = struct.Struct("<d").unpack_from
_FLOAT = struct.Struct("<f").unpack_from


class Unsupported(Exception):
    """The schema uses a type this reader does not compile."""


def read_long(data: bytes, pos: int) -> tuple[int, int]:
    """Zig-zag varint."""
    byte = data[pos]
    pos += 1
    n = byte & 0x7F
    shift = 7
    while byte & 0x80:
        byte = data[pos]
        pos += 1
        n |= (byte & 0x7F) << shift
        shift += 7
        if shift > 70:
            raise ValueError("varint longer than 10 bytes")
    return (n >> 1) ^ -(n & 1), pos


def read_string(data: bytes, pos: int) -> tuple[str, int]:
    """Length-prefixed UTF-8."""
    length, pos = read_long(data, pos)
    end = pos + length
    if length < 0 or end > len(data):
        raise IndexError("string runs past the end of the message")
    return data[pos:end].decode(), end


def read_double(data: bytes, pos: int) -> tuple[float, int]:
    """IEEE 754 little-endian double."""
    return _DOUBLE(data, pos)[0], pos + 8


def read_float(data: bytes, pos: int) -> tuple[float, int]:
    """IEEE 754 little-endian float."""
    return _FLOAT(data, pos)[0], pos + 4


def read_boolean(data: bytes, pos: int) -> tuple[bool, int]:
    """One byte, 0 or 1."""
    byte = data[pos]
    if byte > 1:
        raise ValueError(f"boolean byte {byte}")
    return byte == 1, pos + 1


_PRIMITIVES: dict[str, Reader] = {
    "int": read_long,
    "long": read_long,
    "string": read_string,
    "double": read_double,
    "float": read_float,
    "boolean": read_boolean,
}


def compile_reader(schema: Any) -> Reader:
    """A reader for ``schema`` (a parsed, expanded schema); raises Unsupported."""
    if isinstance(schema, str):
        if schema in _PRIMITIVES:
            return _PRIMITIVES[schema]
        raise Unsupported(f"type {schema!r}")
    if isinstance(schema, list):
        return _union(schema)
    kind = schema.get("type")
    if kind == "record":
        return _record([(f["name"], compile_reader(f["type"])) for f in schema["fields"]])
    if isinstance(kind, str) and kind in _PRIMITIVES:
        return _PRIMITIVES[kind]  # logical types stay plain numbers (timestamp-millis: ms)
    raise Unsupported(f"type {kind!r}")


def _union(branches: list[Any]) -> Reader:
    if len(branches) != 2 or "null" not in branches:
        raise Unsupported(f"union {branches!r}")
    null_index = branches.index("null")
    value_reader = compile_reader(branches[1 - null_index])

    def read(data: bytes, pos: int) -> tuple[Any, int]:
        index, pos = read_long(data, pos)
        if index == null_index:
            return None, pos
        if index != 1 - null_index:
            raise ValueError(f"union index {index} out of range")
        return value_reader(data, pos)

    return read


def _record(fields: list[tuple[str, Reader]]) -> Reader:
    def read(data: bytes, pos: int) -> tuple[dict[str, Any], int]:
        record = {}
        for name, reader in fields:
            record[name], pos = reader(data, pos)
        return record, pos

    return read

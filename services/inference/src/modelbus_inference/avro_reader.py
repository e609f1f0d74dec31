"""A compiled Avro binary reader for flat records (the typed request), without datetimes.

fastavro's schemaless_reader spends ~13 us per request, much of it building two datetime
objects; the stream needs plain numbers. A record of primitives, nested records and
``[null, x]`` unions is turned into one straight-line Python function (source generated from
the schema, as fastavro's own compiler does), ~2x faster; anything else is reported as
unsupported so the caller keeps fastavro. Logical types stay plain numbers
(timestamp-millis: milliseconds).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

Reader = Callable[[bytes, int], tuple[Any, int]]
_PRIMITIVES = {"int", "long", "string", "double", "float", "boolean"}


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


class _Emitter:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.count = 0

    def var(self) -> str:
        self.count += 1
        return f"v{self.count}"

    def emit(self, indent: int, line: str) -> None:
        self.lines.append("    " * indent + line)

    def long(self, indent: int, target: str) -> None:
        self.emit(indent, "b = data[pos]")
        self.emit(indent, "if b < 128:")
        self.emit(indent + 1, f"{target} = (b >> 1) ^ -(b & 1)")
        self.emit(indent + 1, "pos += 1")
        self.emit(indent, "else:")
        self.emit(indent + 1, f"{target}, pos = read_long(data, pos)")

    def value(self, schema: Any, indent: int) -> str:
        """Emit code reading ``schema``; returns the expression holding the value."""
        if isinstance(schema, list):
            return self.union(schema, indent)
        kind = schema if isinstance(schema, str) else schema.get("type")
        if kind == "record":
            parts = [f"{f['name']!r}: {self.value(f['type'], indent)}" for f in schema["fields"]]
            return "{" + ", ".join(parts) + "}"
        if not isinstance(kind, str) or kind not in _PRIMITIVES:
            raise Unsupported(f"type {kind!r}")
        target = self.var()
        if kind in ("int", "long"):
            self.long(indent, target)
        elif kind == "string":
            self.long(indent, "n")
            self.emit(indent, "end = pos + n")
            self.emit(indent, "if n < 0 or end > size:")
            self.emit(indent + 1, "raise IndexError('string runs past the end of the message')")
            self.emit(indent, f"{target} = data[pos:end].decode()")
            self.emit(indent, "pos = end")
        elif kind in ("double", "float"):
            unpack, width = ("unpack_double", 8) if kind == "double" else ("unpack_float", 4)
            self.emit(indent, f"{target} = {unpack}(data, pos)[0]")
            self.emit(indent, f"pos += {width}")
        else:
            self.emit(indent, "b = data[pos]")
            self.emit(indent, "if b > 1:")
            self.emit(indent + 1, "raise ValueError(f'boolean byte {b}')")
            self.emit(indent, f"{target} = b == 1")
            self.emit(indent, "pos += 1")
        return target

    def union(self, branches: list[Any], indent: int) -> str:
        if len(branches) != 2 or "null" not in branches:
            raise Unsupported(f"union {branches!r}")
        null_index = branches.index("null")
        target, index = self.var(), self.var()
        self.long(indent, index)
        self.emit(indent, f"if {index} == {null_index}:")
        self.emit(indent + 1, f"{target} = None")
        self.emit(indent, f"elif {index} == {1 - null_index}:")
        inner = self.value(branches[1 - null_index], indent + 1)
        self.emit(indent + 1, f"{target} = {inner}")
        self.emit(indent, "else:")
        self.emit(indent + 1, f"raise ValueError(f'union index {{{index}}} out of range')")
        return target


def compile_reader(schema: Any) -> Reader:
    """A reader ``(data, pos) -> (value, end)`` for ``schema``; raises Unsupported."""
    emitter = _Emitter()
    result = emitter.value(schema, 1)
    source = "\n".join(
        [
            "def read(data, pos):",
            "    size = len(data)",
            *emitter.lines,
            f"    return {result}, pos",
        ]
    )
    namespace: dict[str, Any] = {
        "read_long": read_long,
        "unpack_double": struct.Struct("<d").unpack_from,
        "unpack_float": struct.Struct("<f").unpack_from,
    }
    name = schema.get("name", "") if isinstance(schema, dict) else str(schema)
    code = compile(source, f"<avro reader {name}>", "exec")
    # The source is generated from our own schema, never from message content.
    exec(code, namespace)  # noqa: S102
    reader: Reader = namespace["read"]
    return reader

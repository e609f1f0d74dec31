"""A valid example of every event, built from its schema (for the demo, docs and smoke tests)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from modelbus.events.schemas import Schema

_EXAMPLE_TIME = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
_PRIMITIVE_EXAMPLES: dict[str, Any] = {
    "null": None,
    "boolean": True,
    "int": 1,
    "long": 42,
    "float": 0.5,
    "double": 0.25,
    "bytes": b"\x00\x01",
    "string": "example",
}


def example_record(schema: Any, named: dict[str, Schema] | None = None) -> Any:
    """A value that fits ``schema`` (an expanded schema), with each field present."""
    named = {} if named is None else named
    if isinstance(schema, str):
        return (
            _PRIMITIVE_EXAMPLES[schema]
            if schema in _PRIMITIVE_EXAMPLES
            else example_record(named[schema], named)
        )
    if isinstance(schema, list):
        non_null = [member for member in schema if member != "null"]
        return example_record(non_null[0], named) if non_null else None
    if schema.get("logicalType") == "timestamp-millis":
        return _EXAMPLE_TIME
    kind = schema["type"]
    if kind == "record":
        named[schema["name"]] = schema
        return {spec["name"]: example_record(spec["type"], named) for spec in schema["fields"]}
    if kind == "array":
        return [example_record(schema["items"], named)]
    if kind == "map":
        return {"key": example_record(schema["values"], named)}
    return example_record(kind, named)

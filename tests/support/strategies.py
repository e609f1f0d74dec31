"""Hypothesis strategies built from Avro schemas, so every schema is property-tested."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import strategies as st

_INT32 = st.integers(min_value=-(2**31), max_value=2**31 - 1)
_INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
_PRIMITIVES: dict[str, st.SearchStrategy[Any]] = {
    "null": st.none(),
    "boolean": st.booleans(),
    "int": _INT32,
    "long": _INT64,
    "float": st.floats(width=32, allow_nan=False),
    "double": st.floats(allow_nan=False),
    "bytes": st.binary(max_size=64),
    "string": st.text(max_size=32),
}
_TIMESTAMPS = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
).map(lambda moment: moment.replace(microsecond=moment.microsecond // 1000 * 1000))


def from_schema(schema: Any, named: dict[str, Any] | None = None) -> st.SearchStrategy[Any]:
    """Values that fit an expanded Avro schema."""
    named = {} if named is None else named
    if isinstance(schema, str):
        return _PRIMITIVES[schema] if schema in _PRIMITIVES else from_schema(named[schema], named)
    if isinstance(schema, list):
        return st.one_of([from_schema(member, named) for member in schema])
    if schema.get("logicalType") == "timestamp-millis":
        return _TIMESTAMPS
    kind = schema["type"]
    if kind == "record":
        named[schema["name"]] = schema
        return st.fixed_dictionaries(
            {spec["name"]: from_schema(spec["type"], named) for spec in schema["fields"]}
        )
    if kind == "array":
        return st.lists(from_schema(schema["items"], named), max_size=4)
    if kind == "map":
        return st.dictionaries(
            st.text(max_size=12), from_schema(schema["values"], named), max_size=4
        )
    return from_schema(kind, named)

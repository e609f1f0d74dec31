"""Every released schema under schemas/history/ is still read by today's schema.

Data is written with each history form (fastavro's schemaless writer, every union branch that
carries a value taken once) and read with today's form as the reader schema: fields both forms
share come back as the old form reads them, fields added since come back as their defaults.
"""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer

from modelbus.events.schemas import expand, find_schema_dir, load_named

SCHEMAS = find_schema_dir()
HISTORY = sorted((SCHEMAS / "history").glob("*.avsc"))
VERSIONED = re.compile(r"^(?P<name>.+)\.v(?P<version>\d+)\.avsc$")


def _today() -> dict[str, Any]:
    return load_named(sorted(SCHEMAS.glob("*.avsc")))


def _then(path: Path) -> tuple[str, dict[str, Any]]:
    """The history schema's name and every named type as it was in that release: today's, with
    the other history files of the same version in place of today's forms."""
    match = VERSIONED.match(path.name)
    assert match, f"{path.name} is not named <full name>.v<N>.avsc"
    same_release = sorted(path.parent.glob(f"*.v{match['version']}.avsc"))
    named = {**_today(), **load_named(same_release)}
    (name,) = load_named([path])
    assert name == match["name"], f"{path.name} holds {name}"
    return name, named


def _datum(schema: Any, choice: int) -> Any:
    """A value of ``schema``; ``choice`` picks which non-null union branch carries the value."""
    if isinstance(schema, list):
        branches = [b for b in schema if b != "null"]
        return _datum(branches[choice % len(branches)], choice) if branches else None
    if isinstance(schema, str):
        return {
            "null": None,
            "boolean": True,
            "int": 7,
            "long": 2**53 + 1,
            "float": 0.5,
            "double": 0.25,
            "bytes": b"\x00\x01",
            "string": f"s{choice}",
        }[schema]
    kind = schema["type"]
    if schema.get("logicalType") == "timestamp-millis":
        return datetime(2026, 11, 26, 8, 13, 57, 123000, tzinfo=UTC)
    if kind == "record":
        return {f["name"]: _datum(f["type"], choice) for f in schema["fields"]}
    if kind == "enum":
        return schema["symbols"][choice % len(schema["symbols"])]
    if kind == "array":
        return [_datum(schema["items"], choice), _datum(schema["items"], choice + 1)]
    if kind == "map":
        values = schema["values"]
        count = len([b for b in values if b != "null"]) if isinstance(values, list) else 1
        return {f"k{i}": _datum(values, i) for i in range(count)}
    if kind == "fixed":
        return b"\x02" * schema["size"]
    return _datum(kind, choice)


def _expected(written: Any, reader: Any) -> Any:
    """What a reader with schema ``reader`` must see for ``written``."""
    if isinstance(reader, list):
        records = [b for b in reader if isinstance(b, dict) and b["type"] == "record"]
        if isinstance(written, dict) and len(records) == 1:
            return _expected(written, records[0])
        return written
    if isinstance(reader, dict) and reader["type"] == "record" and isinstance(written, dict):
        return {
            f["name"]: _expected(written[f["name"]], f["type"])
            if f["name"] in written
            else f["default"]
            for f in reader["fields"]
        }
    if isinstance(reader, dict) and reader["type"] == "array":
        return [_expected(item, reader["items"]) for item in written]
    if isinstance(reader, dict) and reader["type"] == "map":
        return {k: _expected(v, reader["values"]) for k, v in written.items()}
    return written


def test_every_schema_changed_since_its_first_commit_has_its_released_forms_kept() -> None:
    kept = {VERSIONED.match(p.name)["name"] for p in HISTORY}  # type: ignore[index]
    assert {
        "modelbus.events.CanaryEvaluated",
        "modelbus.events.DriftDetected",
        "modelbus.events.DriftEvidence",
        "modelbus.events.ModelHealth",
        "modelbus.events.ModelRegistered",
        "modelbus.events.PredictionRequest",
        "modelbus.events.RolloutStarted",
        "modelbus.events.TrainingRequested",
    } <= kept
    assert len([p for p in HISTORY if "PredictionRequest" in p.name]) == 2


@pytest.mark.parametrize("path", HISTORY, ids=[p.name for p in HISTORY])
def test_data_written_with_a_history_schema_is_read_by_todays_schema(path: Path) -> None:
    name, then = _then(path)
    old = expand(name, then)
    new = expand(name, _today())
    assert old != new, f"{path.name} is the same as today's {name}: nothing to keep"
    for choice in range(3):
        written = _datum(old, choice)
        buffer = io.BytesIO()
        schemaless_writer(buffer, parse_schema(old), written)
        data = buffer.getvalue()
        # What the old form put on the wire, read back by itself (the first PredictionRequest
        # form wrote a long as a double: that loss is the writer's, and it is kept as written).
        as_written = schemaless_reader(io.BytesIO(data), parse_schema(old), None)
        reading = io.BytesIO(data)
        read = schemaless_reader(reading, parse_schema(old), parse_schema(new))
        assert read == _expected(as_written, new)
        assert reading.read() == b"", "today's reader left bytes of the old record unread"
        assert set(read) == {f["name"] for f in new["fields"]}

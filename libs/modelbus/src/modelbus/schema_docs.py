"""The event catalogue, generated from ``schemas/`` (the single source of truth).

One section per event: its log (topic and key), its doc, and a table of its fields with Avro
type, default and doc; then the records events embed (``EventMeta``, ``Route``...). The checked-in
``docs/events.md`` is this module's output: ``python -m modelbus.schema_docs --write
docs/events.md``; a unit test fails when it is stale.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from modelbus.bus.topics import HEALTH_TOPIC, LIFECYCLE_TOPIC, SHARED_DLQ_TOPIC, data_topic
from modelbus.events.meta import DATA_PLANE_EVENTS, LIFECYCLE_EVENTS

NAMESPACE = "modelbus.events"
LOGS: dict[str, str] = {cls.__name__: f"`{LIFECYCLE_TOPIC}`, keyed by model"
                        for cls in LIFECYCLE_EVENTS} | {
    "PredictionRequest": f"`{data_topic('<model>', 'requests')}`, keyed by request id",
    "PredictionResult": f"`{data_topic('<model>', 'predictions')}`, keyed by request id",
    "Feedback": f"`{data_topic('<model>', 'feedback')}`, keyed by request id",
    "ModelHealth": f"`{HEALTH_TOPIC}`, keyed by model",
    "DeadLetter": f"`{data_topic('<model>', 'dlq')}` (or `{SHARED_DLQ_TOPIC}`), keyed by model",
}  # fmt: skip
"""Where each event is written (as ``modelbus.bus.topics.route`` sends it)."""


def avro_type(schema: Any) -> str:
    """An Avro type as one short, readable line.

    >>> avro_type(["null", {"type": "array", "items": "modelbus.events.Route"}])
    'null or array of [Route](#route)'
    >>> avro_type({"type": "long", "logicalType": "timestamp-millis"})
    'long (timestamp-millis)'
    """
    if isinstance(schema, list):
        return " or ".join(avro_type(branch) for branch in schema)
    if isinstance(schema, str):
        if schema.startswith(f"{NAMESPACE}."):
            name = schema.removeprefix(f"{NAMESPACE}.")
            return f"[{name}](#{name.lower()})"
        return schema
    kind = schema["type"]
    if "logicalType" in schema:
        return f"{kind} ({schema['logicalType']})"
    if kind == "array":
        return f"array of {avro_type(schema['items'])}"
    if kind == "map":
        return f"map of {avro_type(schema['values'])}"
    if kind == "enum":
        return "enum " + " / ".join(schema["symbols"])
    if kind == "record":
        return avro_type(f"{schema.get('namespace', NAMESPACE)}.{schema['name']}")
    return avro_type(kind)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def record(schema: dict[str, Any], log: str | None) -> str:
    """One record's section: heading, log, doc and field table."""
    lines = [f"### {schema['name']}", ""]
    if log is not None:
        lines += [f"Log: {log}.", ""]
    if schema.get("doc"):
        lines += [schema["doc"], ""]
    lines += ["| field | type | default | doc |", "| --- | --- | --- | --- |"]
    for field in schema["fields"]:
        default = f"`{json.dumps(field['default'])}`" if "default" in field else "required"
        lines.append(f"| `{field['name']}` | {_cell(avro_type(field['type']))} | "
                     f"{_cell(default)} | {_cell(field.get('doc', ''))} |")  # fmt: skip
    return "\n".join(lines)


def document(schemas: Path) -> str:
    """The whole catalogue from the ``.avsc`` files under ``schemas`` (history excluded)."""
    loaded = {
        json.loads(path.read_text())["name"]: json.loads(path.read_text())
        for path in sorted(schemas.glob(f"{NAMESPACE}.*.avsc"))
    }
    lifecycle = [c.__name__ for c in LIFECYCLE_EVENTS if c.__name__ in loaded]
    data = [c.__name__ for c in DATA_PLANE_EVENTS if c.__name__ in loaded]
    embedded = sorted(set(loaded) - set(lifecycle) - set(data))
    parts = [
        "# Event catalogue",
        "",
        "<!-- generated from schemas/ by `python -m modelbus.schema_docs --write "
        "docs/events.md`; do not edit by hand -->",
        "",
        "Every event modelbus writes, as `schemas/*.avsc` defines it (Avro, namespace "
        f"`{NAMESPACE}`). A field with a default may be missing from events written before it "
        "was added; those events still decode with the default. Released forms of changed "
        "schemas are kept under `schemas/history/`.",
        "",
        "## Lifecycle events",
        "",
    ]
    parts += [record(loaded[name], LOGS.get(name)) + "\n" for name in lifecycle]
    parts += ["## Data-plane events", ""]
    parts += [record(loaded[name], LOGS.get(name)) + "\n" for name in data]
    parts += ["## Records embedded in events", ""]
    parts += [record(loaded[name], None) + "\n" for name in embedded]
    return "\n".join(parts).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    """Print the catalogue, or write it to a file (``--write docs/events.md``)."""
    parser = argparse.ArgumentParser(prog="python -m modelbus.schema_docs", description=__doc__)
    parser.add_argument("--schemas", type=Path, default=Path("schemas"), help="the .avsc folder")
    parser.add_argument("--write", type=Path, help="write the Markdown here")
    args = parser.parse_args(argv)
    text = document(args.schemas)
    if args.write is None:
        sys.stdout.write(text)
    else:
        args.write.parent.mkdir(parents=True, exist_ok=True)
        args.write.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

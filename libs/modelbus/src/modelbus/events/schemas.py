"""Loading .avsc files, expanding named references, and fingerprints (CRC-64-AVRO)."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

from fastavro.schema import fingerprint, to_parsing_canonical_form

Schema = dict[str, Any]

_PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


def find_schema_dir() -> Path:
    """schemas/ of this checkout, or ``MODELBUS_SCHEMA_DIR``, or the copy shipped in the wheel."""
    if override := os.environ.get("MODELBUS_SCHEMA_DIR"):
        return Path(override)
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent / "schemas"
        if (candidate / "modelbus.events.EventMeta.avsc").exists():
            return candidate
    shipped = here.parent.parent / "_schemas"
    if shipped.exists():
        return shipped
    raise FileNotFoundError(
        "cannot find the modelbus schemas/ folder; set MODELBUS_SCHEMA_DIR to its path"
    )


def full_name(schema: Schema) -> str:
    """Namespace-qualified name of a named schema."""
    name: str = schema["name"]
    namespace = schema.get("namespace")
    return name if "." in name or not namespace else f"{namespace}.{name}"


def load_named(paths: list[Path]) -> dict[str, Schema]:
    """Parse .avsc files into a dict keyed by full name."""
    named: dict[str, Schema] = {}
    for path in paths:
        schema = json.loads(path.read_text())
        named[full_name(schema)] = schema
    return named


def expand(name: str, named: dict[str, Schema]) -> Schema:
    """A standalone schema for ``name``: each referenced record inlined at its first use."""
    seen: set[str] = set()

    def walk(node: Any, namespace: str | None) -> Any:
        if isinstance(node, str):
            if node in _PRIMITIVES:
                return node
            ref = node if "." in node or namespace is None else f"{namespace}.{node}"
            ref = ref if ref in named else node
            if ref in seen:
                return ref
            if ref not in named:
                raise KeyError(f"schema refers to unknown type {node!r}")
            return walk(named[ref], None)
        if isinstance(node, list):
            return [walk(member, namespace) for member in node]
        node = dict(node)
        kind = node["type"]
        if kind == "record":
            own = full_name(node)
            seen.add(own)
            inner_ns = own.rpartition(".")[0] or None
            node["name"] = own
            node.pop("namespace", None)
            node["fields"] = [
                {**spec, "type": walk(spec["type"], inner_ns)} for spec in node["fields"]
            ]
        elif kind == "array":
            node["items"] = walk(node["items"], namespace)
        elif kind == "map":
            node["values"] = walk(node["values"], namespace)
        elif isinstance(kind, dict | list) or kind not in _PRIMITIVES:
            node["type"] = walk(kind, namespace)
        return node

    return walk(named[name], None)


def fingerprint_of(schema: Schema) -> bytes:
    """The 8-byte CRC-64-AVRO fingerprint, in the little-endian order the header carries."""
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))


def request_schema_for(contract: Schema, template: Schema) -> Schema:
    """A model's PredictionRequest: the generic template with the contract record as features.

    Typed records decode about 4x faster than a map of unions and let the codec itself reject
    a missing field or a wrong type.
    """
    model_namespace = full_name(contract).rpartition(".")[0]
    schema = copy.deepcopy(template)
    schema["name"] = f"{model_namespace}.PredictionRequest"
    schema.pop("namespace", None)
    schema["fields"] = [
        {**spec, "type": contract} if spec["name"] == "features" else spec
        for spec in schema["fields"]
    ]
    return schema

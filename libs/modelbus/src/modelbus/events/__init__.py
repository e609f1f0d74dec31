"""Event contracts: typed classes generated from schemas/, the codec and the schema store."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from modelbus.events.codec import Codec, GenericRecord
from modelbus.events.errors import (
    BadMagic,
    BodyMismatch,
    CodecError,
    EncodeError,
    TruncatedMessage,
    UnknownSchema,
)
from modelbus.events.meta import LIFECYCLE_EVENTS, new_meta
from modelbus.events.schemas import expand, find_schema_dir, load_named, request_schema_for
from modelbus.events.store import KnownSchema, SchemaStore
from modelbus.events.types import *  # noqa: F403  (the generated event classes)
from modelbus.events.types import ALL_RECORDS

__all__ = [
    "LIFECYCLE_EVENTS",
    "BadMagic",
    "BodyMismatch",
    "Codec",
    "CodecError",
    "EncodeError",
    "GenericRecord",
    "KnownSchema",
    "SchemaStore",
    "TruncatedMessage",
    "UnknownSchema",
    "build_codec",
    "contract_path",
    "event_schemas",
    "example_event",
    "load_contract",
    "new_meta",
    "register_contract",
]

CLASSES = {cls.SCHEMA_NAME: cls for cls in ALL_RECORDS}


@lru_cache(maxsize=1)
def _event_schemas() -> dict[str, dict]:
    schema_dir = find_schema_dir()
    named = load_named(sorted(schema_dir.glob("*.avsc")))
    return {name: expand(name, named) for name in named}


def contract_path(model: str, schema_dir: Path | None = None) -> Path:
    """Where a model's data contract lives."""
    return (schema_dir or find_schema_dir()) / "models" / f"{model}.avsc"


def load_contract(model: str, schema_dir: Path | None = None) -> dict[str, Any]:
    """A model's data contract (its typed feature record), as JSON data."""
    path = contract_path(model, schema_dir)
    if not path.is_file():
        raise FileNotFoundError(f"model {model!r} has no data contract: expected {path}")
    contract: dict[str, Any] = json.loads(path.read_text())
    return contract


def register_contract(store: SchemaStore, contract: dict) -> KnownSchema:
    """Know a model's typed PredictionRequest; returns it (the data-plane writer schema)."""
    template = _event_schemas()["modelbus.events.PredictionRequest"]
    store.add(contract)
    return store.add(request_schema_for(contract, template))


def event_schemas() -> dict[str, dict]:
    """Every event schema, expanded, by full name."""
    return _event_schemas()


def example_event(cls: type) -> Any:
    """A valid instance of an event class, from its schema."""
    from modelbus.events.examples import example_record

    return cls.from_avro(example_record(_event_schemas()[cls.SCHEMA_NAME]))  # type: ignore[attr-defined]


def build_codec(store: SchemaStore | None = None, *, models: tuple[str, ...] = ()) -> Codec:
    """A codec that knows every event schema and the data contracts of ``models``."""
    store = store or SchemaStore()
    for schema in _event_schemas().values():
        store.add(schema)
    for model in models:
        register_contract(store, load_contract(model))
    return Codec(store, CLASSES)

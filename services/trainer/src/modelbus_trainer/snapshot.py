"""Content-addressed training snapshots: which rows, from where, and their sha256."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelbus.events.types import DataLineage, DataSource
from modelbus.packaging import feature_specs


class TrainingError(Exception):
    """A job cannot go on; ``stage`` and ``reason`` become TrainingFailed."""

    def __init__(self, stage: str, reason: str) -> None:
        super().__init__(f"{stage}: {reason}")
        self.stage = stage
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Slice:
    """Labelled rows from one source (a file, or one topic partition's offset range)."""

    rows: list[dict]
    labels: list[int]
    source: DataSource


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The exact rows a model is trained on, stored at ``path`` named by its sha256."""

    rows: list[dict]
    labels: list[int]
    sha256: str
    path: Path
    lineage: DataLineage


def validate_rows(
    rows: Sequence[Mapping[str, Any]], contract: Mapping[str, Any], where: str
) -> None:
    """Every contract field present, numeric fields numeric; else a 'validate' TrainingError."""
    specs = feature_specs(contract)
    for number, row in enumerate(rows):
        missing = [spec.name for spec in specs if spec.name not in row]
        if missing:
            raise TrainingError(
                "validate",
                f"contract mismatch: row {number} of {where} lacks {missing} required by "
                f"{contract.get('name')}; regenerate that data for today's contract",
            )
        for spec in specs:
            value = row[spec.name]
            if spec.kind == "numeric" and not (
                value is None or (isinstance(value, int | float) and not isinstance(value, bool))
            ):
                raise TrainingError(
                    "validate",
                    f"contract mismatch: row {number} of {where} has {spec.name}={value!r}, "
                    f"but the contract says {spec.avro_type}",
                )


def assemble(
    slices: Sequence[Slice],
    contract: Mapping[str, Any],
    *,
    max_rows: int,
    min_rows: int,
    snapshot_dir: Path,
    where_to_look: str,
) -> Snapshot:
    """Join the slices in order, keep the newest ``max_rows``, check them, store the snapshot."""
    names = [spec.name for spec in feature_specs(contract)]
    rows: list[dict] = []
    labels: list[int] = []
    kept_sources: list[DataSource] = []
    total = sum(len(piece.rows) for piece in slices)
    drop = max(total - max_rows, 0)  # oldest first: reference rows give way to production ones
    for piece in slices:
        validate_rows(piece.rows, contract, piece.source.uri)
        skip = min(drop, len(piece.rows))
        drop -= skip
        if skip == len(piece.rows) and piece.rows:
            continue
        rows += [{name: row.get(name) for name in names} for row in piece.rows[skip:]]
        labels += [int(label) for label in piece.labels[skip:]]
        kept_sources.append(_trimmed(piece.source, skip))
    if not rows:
        raise TrainingError(
            "snapshot",
            f"the snapshot is empty: {where_to_look}. Generate reference data or send Feedback "
            "for served requests, then request training again",
        )
    classes = sorted(set(labels))
    if len(classes) < 2:
        raise TrainingError(
            "validate",
            f"all {len(rows)} snapshot rows have label {classes[0]}; a classifier needs both "
            "classes: add labelled data of the other class (Feedback) or fix the reference data",
        )
    if len(rows) < min_rows:
        raise TrainingError(
            "validate",
            f"the snapshot has {len(rows)} rows, fewer than min_rows={min_rows}; wait for more "
            "feedback or lower MODELBUS_TRAINER_MIN_ROWS",
        )
    payload = canonical_bytes(rows, labels, names)
    sha256 = hashlib.sha256(payload).hexdigest()
    path = snapshot_dir / f"{sha256}.jsonl"
    if not path.exists():
        snapshot_dir.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        partial.write_bytes(payload)
        partial.replace(path)
    lineage = DataLineage(snapshot_sha256=sha256, rows=len(rows), sources=kept_sources)
    return Snapshot(rows=rows, labels=labels, sha256=sha256, path=path, lineage=lineage)


def canonical_bytes(
    rows: Sequence[Mapping[str, Any]], labels: Sequence[int], names: list[str]
) -> bytes:
    """One ``{"x": {...}, "y": label}`` JSON line per row, fields in contract order."""
    lines = [
        json.dumps({"x": {name: row[name] for name in names}, "y": label}, separators=(",", ":"))
        for row, label in zip(rows, labels, strict=True)
    ]
    return ("\n".join(lines) + "\n").encode()


def load_snapshot(path: Path) -> tuple[list[dict], list[int], str]:
    """Rows, labels and sha256 of a stored snapshot, checking its name is its content hash."""
    payload = path.read_bytes()
    sha256 = hashlib.sha256(payload).hexdigest()
    if path.stem != sha256:
        raise TrainingError("snapshot", f"{path} has sha256 {sha256}: it was modified")
    rows, labels = [], []
    for line in payload.decode().splitlines():
        record = json.loads(line)
        rows.append(record["x"])
        labels.append(int(record["y"]))
    return rows, labels, sha256


def _trimmed(source: DataSource, skipped: int) -> DataSource:
    # The oldest rows go first, so a trimmed slice is the last ``rows`` rows of its source.
    return dataclasses.replace(source, rows=source.rows - skipped) if skipped else source

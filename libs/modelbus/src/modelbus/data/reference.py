"""Reference datasets as JSON lines (no pickle), addressed by their sha256."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from modelbus.data.credit import generate_credit


@dataclass(frozen=True, slots=True)
class ReferenceData:
    """Rows, labels and where they came from."""

    rows: list[dict]
    labels: list[int]
    path: Path
    sha256: str


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_reference(path: str | Path, rows: list[dict], labels: list[int]) -> str:
    """Write ``{"x": features, "y": label}`` lines atomically; returns the file's sha256."""
    if len(rows) != len(labels):
        raise ValueError(f"{len(rows)} rows but {len(labels)} labels")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(partial, "w", encoding="utf-8") as handle:
        for row, label in zip(rows, labels, strict=True):
            handle.write(json.dumps({"x": row, "y": int(label)}, separators=(",", ":")))
            handle.write("\n")
    partial.replace(path)
    return file_sha256(path)


def read_reference(path: str | Path) -> ReferenceData:
    """Read a file written by ``write_reference``."""
    path = Path(path)
    rows: list[dict] = []
    labels: list[int] = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                rows.append(record["x"])
                labels.append(int(record["y"]))
            except (ValueError, KeyError, TypeError) as error:
                raise ValueError(
                    f"{path}:{number} is not a reference record {{'x': ..., 'y': ...}}: {error}"
                ) from error
    return ReferenceData(rows=rows, labels=labels, path=path, sha256=file_sha256(path))


def ensure_reference(
    path: str | Path, *, n_rows: int, seed: int, classification_function: int = 0
) -> ReferenceData:
    """The credit reference dataset at ``path``, generated there first if absent."""
    path = Path(path)
    if not path.exists():
        rows, labels = generate_credit(
            n_rows, seed=seed, classification_function=classification_function
        )
        write_reference(path, rows, labels)
    return read_reference(path)

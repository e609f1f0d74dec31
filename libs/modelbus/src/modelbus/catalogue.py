"""Who produces and who consumes each event, read from the source with ``ast`` (nothing imported).

A component consumes the event types that key its ``EVENT_HANDLERS`` dict, plus any listed in a
module-level ``CONSUMES`` tuple (for readers without a handler table, e.g. a stream of
requests). It produces the event types it constructs (``t.ModelTrained(...)``), plus any listed
in a module-level ``PRODUCES`` tuple (for events written without their class, e.g. a
hand-rolled encoder). The README's table is this module's output:
``python -m modelbus.catalogue --write README.md``.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from modelbus.events.meta import DATA_PLANE_EVENTS, LIFECYCLE_EVENTS

START = "<!-- event-table:start -->"
END = "<!-- event-table:end -->"
EVENTS = {cls.__name__: "lifecycle" for cls in LIFECYCLE_EVENTS} | {
    cls.__name__: "data plane" for cls in DATA_PLANE_EVENTS
}


@dataclass(frozen=True)
class Row:
    """One event and the components on either side of it."""

    event: str
    log: str
    producers: tuple[str, ...]
    consumers: tuple[str, ...]


def components(root: Path) -> dict[str, Path]:
    """Component name -> source folder: each service, the CLI and the shared bus."""
    found = {
        package.name.removeprefix("modelbus_"): package
        for package in sorted((root / "services").glob("*/src/modelbus_*"))
        if package.is_dir()
    }
    library = root / "libs" / "modelbus" / "src" / "modelbus"
    found["cli"] = library / "cli"
    found["bus"] = library / "bus"
    return found


def _event_name(node: ast.expr) -> str | None:
    name = node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", None)
    return name if name in EVENTS else None


def _names(node: ast.expr | None) -> set[str]:
    items: Iterable[ast.expr | None] = ()
    if isinstance(node, ast.Dict):
        items = node.keys
    elif isinstance(node, ast.Tuple | ast.List | ast.Set):
        items = node.elts
    return {name for item in items if item is not None and (name := _event_name(item))}


def scan(folder: Path) -> tuple[set[str], set[str]]:
    """(produced, consumed) event names in the .py files under ``folder``."""
    produced: set[str] = set()
    consumed: set[str] = set()
    for path in sorted(folder.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and (name := _event_name(node.func)):
                produced.add(name)
        for statement in tree.body:
            target: ast.expr | None = None
            value: ast.expr | None = None
            if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
                target, value = statement.targets[0], statement.value
            elif isinstance(statement, ast.AnnAssign):
                target, value = statement.target, statement.value
            label = getattr(target, "id", "")
            if label in ("EVENT_HANDLERS", "CONSUMES"):
                consumed |= _names(value)
            elif label == "PRODUCES":
                produced |= _names(value)
    return produced, consumed


def catalogue(root: Path) -> list[Row]:
    """One row per event, lifecycle first, in the order the events are declared."""
    producers: dict[str, list[str]] = {name: [] for name in EVENTS}
    consumers: dict[str, list[str]] = {name: [] for name in EVENTS}
    for component, folder in components(root).items():
        produced, consumed = scan(folder)
        for name in produced:
            producers[name].append(component)
        for name in consumed:
            consumers[name].append(component)
    return [
        Row(name, log, tuple(producers[name]), tuple(consumers[name]))
        for name, log in EVENTS.items()
    ]


def markdown(rows: list[Row]) -> str:
    """The rows as a Markdown table; ``—`` marks a side nobody is on yet.

    >>> print(markdown([Row("ModelTrained", "lifecycle", ("trainer",), ())]))
    | event | log | produced by | consumed by |
    | --- | --- | --- | --- |
    | `ModelTrained` | lifecycle | trainer | — |
    """
    lines = ["| event | log | produced by | consumed by |", "| --- | --- | --- | --- |"]
    for row in rows:
        producers = ", ".join(row.producers) or "—"
        consumers = ", ".join(row.consumers) or "—"
        lines.append(f"| `{row.event}` | {row.log} | {producers} | {consumers} |")
    return "\n".join(lines)


def section(text: str) -> str:
    """What a document holds between the event-table markers (ValueError if they are absent)."""
    start, end = text.find(START), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"no {START} ... {END} section")
    return text[start + len(START) : end].strip("\n")


def with_section(text: str, table: str) -> str:
    """``text`` with the part between the markers replaced by ``table``."""
    section(text)
    head, rest = text.split(START, 1)
    return f"{head}{START}\n{table}\n{END}{rest.split(END, 1)[1]}"


def main(argv: list[str] | None = None) -> int:
    """Print the table, or write it between the markers of a document (``--write README.md``)."""
    parser = argparse.ArgumentParser(prog="python -m modelbus.catalogue", description=__doc__)
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="the repository root")
    parser.add_argument("--write", type=Path, help="a document with the event-table markers")
    args = parser.parse_args(argv)
    table = markdown(catalogue(args.root))
    if args.write is None:
        print(table)
        return 0
    args.write.write_text(with_section(args.write.read_text(), table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
